"""Retries with the echo engine: what is transient, what is permanent, and the pause between.

Transient: the engine died, it could not start, the request timed out. Those are retried
with exponential backoff and full jitter up to `max_attempts`, then the line says what
happened and how many attempts were made. Permanent (an invalid body): one 400 line.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from freight.config import ModelSettings, Settings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service.runtime import Service
from freight.worker import dispatcher
from tests.conftest import FAST_WORKER, chat_line, make_settings
from tests.integration.test_worker import TERMINAL, result_lines, run_until, submit


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    random.seed(6)
    for attempt in range(1, 10):
        pauses = [dispatcher.backoff_seconds(attempt) for _ in range(200)]
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert all(0 <= p <= ceiling for p in pauses)
        assert max(pauses) > 0.8 * ceiling  # spread over the whole range (full jitter) ...
        assert min(pauses) < 0.2 * ceiling  # ... so retries of one failure do not bunch
        assert len(set(pauses)) == len(pauses)


def test_timed_out_requests_are_retried_then_given_up_with_the_attempt_count(
    tmp_path: Path,
) -> None:
    # A copy: the shared FAST_WORKER settings must not change under other tests.
    worker = FAST_WORKER.model_copy(update={"request_timeout_seconds": 0.2, "max_attempts": 2})
    settings = make_settings(tmp_path, worker=worker)
    pool = EnginePool(settings, Registry(settings))
    pool.add(EchoEngine("echo", delay_seconds=5))
    svc = Service(settings, engines=pool)
    batch_id = submit(svc, [chat_line("slow", "x", model="echo")])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL, timeout=30))
    (line,) = result_lines(svc, record)
    assert line["error"] == {
        "code": "engine_error",
        "message": "The request failed after 2 attempts; the last failure was: "
        "no result within 0.2 s (timed out)",
    }
    assert svc.worker is not None and svc.worker.num_retries == 2


def test_a_dead_engine_is_replaced_and_the_batch_completes(tmp_path: Path) -> None:
    settings: Settings = make_settings(
        tmp_path,
        models=[ModelSettings(name="echo", engine="echo", delay_seconds=0.2)],
        worker=FAST_WORKER.model_copy(update={"max_in_flight": 4}),
    )
    svc = Service(settings)
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(20)])

    async def kill_engine_once(record: object) -> bool:
        engine = svc.engines._engines.get("echo")
        if engine is None or svc.worker is None or svc.worker.num_in_flight == 0:
            return False
        echo = engine.engine  # type: ignore[attr-defined]
        echo.is_running = False  # the engine died ...
        echo.fail_next = 10**6  # ... and any request that still reached it would fail
        return True

    record = asyncio.run(run_until(svc, batch_id, TERMINAL, action=kill_engine_once))
    assert record.status == "completed" and record.num_succeeded == 20
    assert svc.engines.num_restarts == {"echo": 1}
    assert sorted(x["custom_id"] for x in result_lines(svc, record)) == sorted(
        f"r{i}" for i in range(20)
    )
