"""Ingest, the ingest's give-up and the cancel before ingest queue rows in chunks
(worker/ingest.py `queue_rows`): with a chunk of 3 rows, every request still gets
exactly one row and the counts match. The echo engine serves; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from freight.engines.echo import EchoEngine
from freight.protocol import message_batch_input
from freight.store import batch_requests, batches
from freight.worker import ingest
from tests.conftest import chat_line, make_settings
from tests.integration.test_message_batch_worker import results
from tests.integration.test_message_batch_worker import submit as submit_message_batch
from tests.integration.test_worker import TERMINAL, result_lines, run_until, service, submit

NAMES = [f"r{i}" for i in range(10)]  # three full chunks of 3, and a last one of 1


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "CHUNK", 3)


def test_openai_batch_queued_in_chunks_runs_every_line_once(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    lines = [chat_line(name, f"say {name}", model="echo") for name in NAMES]
    lines.append(chat_line("bad", "x", model="echo", max_tokens=0))
    batch_id = submit(svc, lines)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert (record.num_total, record.num_succeeded, record.num_errored) == (11, 10, 1)
    assert sorted(x["custom_id"] for x in result_lines(svc, record)) == sorted([*NAMES, "bad"])


def test_message_batch_queued_in_chunks_runs_every_request_once(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit_message_batch(svc, NAMES)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert (record.num_total, record.num_succeeded, record.model) == (10, 10, "echo")
    by_id = results(svc, batch_id)
    assert sorted(by_id) == sorted(NAMES)
    assert {result["type"] for result in by_id.values()} == {"succeeded"}


def test_message_batch_cancelled_before_ingest_gets_each_cancelled_row_once(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit_message_batch(svc, NAMES)
    with svc.db.write() as conn:
        batches.request_cancel(conn, batch_id, "default", api="anthropic")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "cancelled"
    assert record.num_cancelled == record.num_total == 10
    assert results(svc, batch_id) == {name: {"type": "canceled"} for name in NAMES}
    with svc.db.read() as conn:
        assert batch_requests.count_for_batch(conn, batch_id) == 10


def test_message_batch_whose_ingest_gives_up_gets_each_errored_row_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(message_batch_input, "iter_requests", broken)
    settings = make_settings(tmp_path, database_url=database_url)
    settings.worker.max_batch_step_attempts = 1
    svc = service(settings, EchoEngine("echo"))
    batch_id = submit_message_batch(svc, NAMES)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert record.num_errored == record.num_total == 10
    by_id = results(svc, batch_id)
    assert sorted(by_id) == sorted(NAMES)
    assert {result["type"] for result in by_id.values()} == {"errored"}
