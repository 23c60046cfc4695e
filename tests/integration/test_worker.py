"""The worker with the zero-cost echo engine: lifecycle, counts, cancel, expiry, retries.

These isolate Freight's own machinery; the same behaviours are proven with the real
engine and the official SDKs in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from freight.config import Settings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.protocol import openai_wire
from freight.service.intake import create_openai_batch
from freight.service.runtime import Service
from freight.store import batch_requests, batches, files
from tests.conftest import chat_line, make_settings

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def submit(svc: Service, lines: list[Any], window: str = "24h") -> str:
    raw = "".join(json.dumps(x) + "\n" for x in lines).encode()
    record = files.new_record(
        project="default", filename="in.jsonl", purpose="batch", num_bytes=len(raw)
    )
    with svc.blobs.create(record.blob) as fh:
        fh.write(raw)
    with svc.db.write() as conn:
        files.insert(conn, record)
    batch = create_openai_batch(
        svc,
        "default",
        openai_wire.CreateBatch(
            input_file_id=record.id, endpoint="/v1/chat/completions", completion_window=window
        ),
    )
    return batch.id


def service(settings: Settings, engine: EchoEngine) -> Service:
    pool = EnginePool(settings, Registry(settings))
    pool.add(engine)
    return Service(settings, engines=pool)


async def run_until(
    svc: Service,
    batch_id: str,
    statuses: set[str],
    *,
    action: Any = None,
    timeout: float = 30,
    also: Any = lambda: True,
) -> batches.BatchRecord:
    stop = asyncio.Event()
    assert svc.worker is not None
    task = asyncio.create_task(svc.worker.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while True:
            with svc.db.read() as conn:
                record = batches.get(conn, batch_id)
            if action is not None and await action(record):
                action = None
            if record.status in statuses and also():
                return record
            assert time.monotonic() < deadline, f"batch stuck in {record.status}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def expire_after(svc: Service, num_succeeded: int) -> Any:
    """A run_until action: once `num_succeeded` requests of the batch have succeeded, its
    completion window ends now. A fixed short window would race the ingest on a loaded
    machine (every request expired, none succeeded); this ends it mid-run every time."""

    async def action(record: batches.BatchRecord) -> bool:
        if record.num_succeeded < num_succeeded:
            return False
        with svc.db.write() as conn:
            batches.set_values(conn, record.id, expires_at=int(time.time()))
        return True

    return action


def result_lines(svc: Service, record: batches.BatchRecord) -> list[dict[str, Any]]:
    lines = []
    for file_id in (record.output_file_id, record.error_file_id):
        if file_id:
            with svc.db.read() as conn:
                blob = files.get(conn, file_id).blob
            with svc.blobs.open(blob) as fh:
                lines += [json.loads(x) for x in fh]
    return lines


def test_batch_runs_to_completion_with_every_line_accounted(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    lines = [chat_line(f"r{i}", f"say {i}", model="echo") for i in range(50)]
    lines.append(chat_line("bad", "x", model="echo", max_tokens=0))
    batch_id = submit(svc, lines)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert (record.num_total, record.num_succeeded, record.num_errored) == (51, 50, 1)
    out = result_lines(svc, record)
    assert sorted(x["custom_id"] for x in out) == sorted(x["custom_id"] for x in lines)
    for x in out:
        openai_wire.BatchRequestOutput.model_validate(x)
    bad = next(x for x in out if x["custom_id"] == "bad")
    assert bad["response"]["status_code"] == 400 and bad["error"] is None
    with svc.db.read() as conn:
        history = [e["to_status"] for e in batches.events(conn, batch_id)]
    assert history == ["validating", "in_progress", "finalizing", "completed"]


def test_all_failed_batch_completes_without_output_file(tmp_path: Path, database_url: str) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo", max_tokens=0) for i in range(3)])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert record.output_file_id is None and record.error_file_id is not None


def test_invalid_file_fails_with_errors_and_no_requests(tmp_path: Path, database_url: str) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit(svc, [chat_line("a", "x", model="echo"), chat_line("a", "y", model="echo")])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "failed" and record.failed_at
    assert record.errors == [
        {
            "code": "duplicate_custom_id",
            "line": 2,
            "param": "custom_id",
            "message": record.errors[0]["message"],
        }
    ]
    with svc.db.read() as conn:
        assert batch_requests.count_by_status(conn, batch_id) == {}


def test_cancel_keeps_finished_lines_and_cancels_the_rest(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(
        make_settings(tmp_path, database_url=database_url), EchoEngine("echo", delay_seconds=0.05)
    )
    svc.settings.worker.max_in_flight = 4
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(200)])

    async def cancel_after_some(record: batches.BatchRecord) -> bool:
        if record.num_succeeded >= 8:
            with svc.db.write() as conn:
                batches.request_cancel(conn, batch_id, "default")
            return True
        return False

    record = asyncio.run(run_until(svc, batch_id, {"cancelled"}, action=cancel_after_some))
    out = result_lines(svc, record)
    assert len(out) == 200 and len({x["custom_id"] for x in out}) == 200
    cancelled = [x for x in out if x["error"] and x["error"]["code"] == "batch_cancelled"]
    assert 0 < len(cancelled) < 200 - 8
    assert record.num_succeeded + record.num_cancelled == 200
    assert record.cancelling_at and record.cancelled_at


def test_expiry_keeps_finished_lines_and_expires_the_rest(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(
        make_settings(tmp_path, database_url=database_url), EchoEngine("echo", delay_seconds=0.05)
    )
    svc.settings.worker.max_in_flight = 4
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(400)])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL, action=expire_after(svc, 8)))
    assert record.status == "expired" and record.expired_at
    out = result_lines(svc, record)
    assert len(out) == 400 and len({x["custom_id"] for x in out}) == 400
    expired = [x for x in out if x["error"] and x["error"]["code"] == "batch_expired"]
    assert record.num_expired == len(expired) > 0
    assert record.num_succeeded == 400 - len(expired) > 0


@pytest.mark.usefixtures("no_backoff")  # the retries are counted, not their pauses
def test_engine_death_is_retried_and_counted(tmp_path: Path, database_url: str) -> None:
    engine = EchoEngine("echo")
    engine.fail_next = 3
    svc = service(make_settings(tmp_path, database_url=database_url), engine)
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(5)])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed" and record.num_succeeded == 5
    assert svc.worker is not None and svc.worker.num_retries == 3


@pytest.mark.usefixtures("no_backoff")  # the tries are counted, not their pauses
def test_retries_give_up_with_a_line_that_says_why(tmp_path: Path, database_url: str) -> None:
    engine = EchoEngine("echo")
    engine.fail_next = 100
    settings = make_settings(tmp_path, database_url=database_url)
    settings.worker.max_attempts = 2
    svc = service(settings, engine)
    batch_id = submit(svc, [chat_line("r0", "x", model="echo")])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    (line,) = result_lines(svc, record)
    assert line["response"] is None
    assert line["error"]["code"] == "engine_error"
    assert "after 2 attempts" in line["error"]["message"]


def test_worker_stop_releases_unfinished_requests_for_the_next_worker(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    svc = service(settings, EchoEngine("echo", delay_seconds=0.2))
    svc.settings.worker.drain_seconds = 0
    batch_id = submit(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(20)])
    worker = svc.worker
    assert worker is not None
    asyncio.run(run_until(svc, batch_id, {"in_progress"}, also=lambda: worker.num_in_flight > 0))
    with svc.db.read() as conn:
        counts = batch_requests.count_by_status(conn, batch_id)
    assert counts.get("running", 0) == 0  # nothing left leased to the stopped worker
    svc2 = service(settings, EchoEngine("echo"))
    record = asyncio.run(run_until(svc2, batch_id, TERMINAL))
    assert record.status == "completed" and record.num_succeeded == 20
    assert len({x["custom_id"] for x in result_lines(svc2, record)}) == 20


def test_identical_greedy_requests_run_once_and_each_gets_its_own_line(
    tmp_path: Path, database_url: str
) -> None:
    engine = EchoEngine("echo", delay_seconds=0.01)
    svc = service(make_settings(tmp_path, database_url=database_url), engine)
    lines = [
        chat_line(f"same-{i}", "the same prompt", model="echo", temperature=0) for i in range(10)
    ]
    lines += [chat_line(f"other-{i}", f"prompt {i}", model="echo", temperature=0) for i in range(5)]
    lines += [chat_line(f"sampled-{i}", "the same prompt", model="echo") for i in range(3)]
    record = asyncio.run(run_until(svc, submit(svc, lines), TERMINAL))
    assert record.status == "completed" and record.num_succeeded == 18
    assert engine.num_requests == 1 + 5 + 3
    out = result_lines(svc, record)
    same = [x for x in out if x["custom_id"].startswith("same-")]
    assert len({x["id"] for x in same}) == 10
    assert len({x["response"]["body"]["id"] for x in same}) == 10
    assert {x["response"]["body"]["choices"][0]["message"]["content"] for x in same} == {
        "the same prompt"
    }


def test_deduplication_can_be_switched_off(tmp_path: Path, database_url: str) -> None:
    engine = EchoEngine("echo")
    settings = make_settings(tmp_path, database_url=database_url)
    settings.scheduler.deduplicate = False
    svc = service(settings, engine)
    lines = [
        chat_line(f"same-{i}", "the same prompt", model="echo", temperature=0) for i in range(4)
    ]
    record = asyncio.run(run_until(svc, submit(svc, lines), TERMINAL))
    assert record.num_succeeded == 4 and engine.num_requests == 4
