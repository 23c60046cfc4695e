"""Every accepted batch ends: a background step that keeps failing has a bounded number of
attempts, counted in the store, and then the batch ends anyway with the reason.

Failures are injected where each step does its work (the input parser, the result
formatter), plus one real body that broke the ingest: a Message Batch whose `params`
nest ~3,000 deep (issue 15, bug 2). The echo engine serves; SQLite and PostgreSQL both.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from pathlib import Path
from typing import Any

import pytest

from freight import ids
from freight.config import ModelSettings, OpenAIBatchUpstream
from freight.engines.echo import EchoEngine
from freight.protocol import message_batch_input, views
from freight.service.runtime import Service
from freight.store import batch_requests, batches, blob_store, files
from freight.store.statuses import RequestStatus
from freight.upstream import passthrough
from freight.worker import dispatcher, finalize, ingest, unqueued
from tests.conftest import FAST_WORKER, chat_line, make_settings
from tests.integration.test_message_batch_worker import results
from tests.integration.test_message_batch_worker import submit as submit_message_batch
from tests.integration.test_worker import TERMINAL, result_lines, run_until, service, submit

# What is counted here is attempts, not the pauses between them (test_retries has those).
pytestmark = pytest.mark.usefixtures("no_backoff")

RECURSION = "maximum recursion depth exceeded while encoding a JSON object"


def echo_service(tmp_path: Path, database_url: str, **worker: Any) -> Service:
    settings = make_settings(
        tmp_path, database_url=database_url, worker=FAST_WORKER.model_copy(update=worker)
    )
    return service(settings, EchoEngine("echo"))


def always_failing(calls: list[int]) -> Any:
    """A stand-in for a parser that fails the same way every time it is called."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RecursionError(RECURSION)

    return fail


def attempts(svc: Service, batch_id: str, step: str) -> batches.StepAttempts:
    with svc.db.read() as conn:
        return batches.step_attempts(conn, batch_id, step)


def submit_api(svc: Service, api: str, custom_ids: list[str]) -> str:
    if api == "anthropic":
        return submit_message_batch(svc, custom_ids)
    return submit(svc, [chat_line(c, f"say {c}", model="echo") for c in custom_ids])


# --- ingest -------------------------------------------------------------------------------


def test_openai_ingest_that_always_fails_ends_the_batch_failed_after_its_attempts(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    calls: list[int] = []
    monkeypatch.setattr(ingest, "iter_lines", always_failing(calls))
    batch_id = submit_api(svc, "openai", ["a", "b"])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "failed" and record.failed_at
    assert len(calls) == 2  # the attempt limit, and not one more
    assert record.errors == [
        {
            "code": "ingest_failed",
            "message": "The batch's requests could not be queued: ingest failed 2 times; "
            f"the last failure was: RecursionError: {RECURSION}",
            "param": None,
            "line": None,
        }
    ]
    views.batch_object(record)  # OpenAI's batch `errors` shape
    assert attempts(svc, batch_id, "ingest").num_attempts == 2
    with svc.db.read() as conn:
        assert batch_requests.count_by_status(conn, batch_id) == {}


def test_message_batch_ingest_that_always_fails_ends_with_every_request_errored(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=3)
    calls: list[int] = []
    monkeypatch.setattr(message_batch_input, "iter_requests", always_failing(calls))
    batch_id = submit_api(svc, "anthropic", ["a", "b", "c"])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert len(calls) == 3
    assert record.status == "completed"
    assert (record.num_total, record.num_errored, record.num_succeeded) == (3, 3, 0)
    view = views.message_batch(record, "http://x")
    assert view.processing_status == "ended" and view.results_url is not None
    assert view.request_counts.errored == 3
    by_id = results(svc, batch_id)  # every custom_id the create accepted, exactly once
    assert sorted(by_id) == ["a", "b", "c"]
    for result in by_id.values():
        assert result["type"] == "errored"
        assert result["error"]["error"]["type"] == "api_error"
        message = result["error"]["error"]["message"]
        assert "ingest failed 3 times" in message and RECURSION in message
    # the create body is gone, and the batch can be deleted like any ended one
    assert not svc.blobs.exists(blob_store.message_batch_requests(batch_id))
    with svc.db.write() as conn:
        batches.delete_ended(conn, batch_id, "default", api="anthropic")


@pytest.mark.parametrize("what", ["file", "contents"])
def test_openai_batch_whose_input_is_gone_fails_at_once(
    tmp_path: Path, database_url: str, what: str
) -> None:
    svc = echo_service(tmp_path, database_url)
    batch_id = submit_api(svc, "openai", ["a"])
    with svc.db.write() as conn:
        record = batches.get(conn, batch_id)
        input_file = files.get(conn, record.input_file_id or "")
        if what == "file":  # its files row deleted after the create
            files.delete(conn, input_file.id)
    svc.blobs.delete(input_file.blob)  # a missing blob is not a storage fault to wait out
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "failed" and record.errors is not None
    (error,) = record.errors
    assert error["code"] == "input_missing" and "no longer exists" in error["message"]
    assert attempts(svc, batch_id, "ingest").num_attempts == 0  # one attempt, which ended it


def deep_message_batch(svc: Service, depth: int) -> str:
    """A Message Batch whose first request's `params` nest `depth` deep, stored as the API
    would store it but without the create's checks (which may come to refuse it)."""
    deep = "[" * depth + "]" * depth
    shallow = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "b"}]}
    body = (
        '{"requests":[{"custom_id":"a","params":{"model":"echo","max_tokens":4,'
        '"messages":[{"role":"user","content":"a"}],"metadata":'
        + deep
        + "}},"
        + json.dumps({"custom_id": "b", "params": shallow})
        + "]}"
    )
    batch_id = ids.new_id("msgbatch_")
    with svc.blobs.create(blob_store.message_batch_requests(batch_id)) as fh:
        fh.write(body.encode())
    now = int(time.time())
    with svc.db.write() as conn:
        batches.insert(
            conn,
            id=batch_id,
            project="default",
            api="anthropic",
            endpoint="/v1/messages",
            completion_window="24h",
            created_at=now,
            expires_at=now + 86400,
            num_total=2,
        )
    return batch_id


def test_deep_params_message_batch_ends_instead_of_retrying_its_ingest_forever(
    tmp_path: Path, database_url: str
) -> None:
    # Issue 15, bug 2: ~3,000-deep params raised RecursionError at every ingest, forever.
    svc = echo_service(tmp_path, database_url)
    batch_id = deep_message_batch(svc, 3000)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL, timeout=60))
    assert record.status == "completed"  # `ended`, with its results
    by_id = results(svc, batch_id)
    assert sorted(by_id) == ["a", "b"] and by_id["a"]["type"] == "errored"
    assert record.num_succeeded + record.num_errored == 2 and record.num_errored >= 1
    assert attempts(svc, batch_id, "ingest").num_attempts <= 3
    with svc.db.write() as conn:
        batches.delete_ended(conn, batch_id, "default", api="anthropic")


def test_attempts_that_died_with_their_worker_count_too(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    calls: list[int] = []
    monkeypatch.setattr(ingest, "iter_lines", always_failing(calls))
    batch_id = submit_api(svc, "openai", ["a"])
    for _ in range(5):  # five workers died during its ingest, before they could say why
        with svc.db.write() as conn:
            batches.begin_attempt(conn, batch_id, "ingest")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    # one more try: the sixth, 3 x max_batch_step_attempts in all, is the last
    assert len(calls) == 1
    assert record.status == "failed" and record.errors is not None
    assert record.errors[0]["message"] == (
        "The batch's requests could not be queued: ingest was tried 6 times, 5 of them "
        f"ending with their worker; the last failure was: RecursionError: {RECURSION}"
    )


def test_a_few_attempts_that_died_with_their_worker_do_not_end_a_batch(
    tmp_path: Path, database_url: str
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    batch_id = submit_api(svc, "openai", ["a", "b"])
    for _ in range(2):  # as many as failures may be, but these say nothing about the input
        with svc.db.write() as conn:
            batches.begin_attempt(conn, batch_id, "ingest")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed" and record.num_succeeded == 2
    history = attempts(svc, batch_id, "ingest")
    assert (history.num_failed, history.num_died) == (0, 2)


def test_attempts_left_by_dead_workers_alone_end_a_batch_without_another_try(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=1)
    calls: list[int] = []
    monkeypatch.setattr(message_batch_input, "iter_requests", always_failing(calls))
    batch_id = submit_api(svc, "anthropic", ["a"])
    for _ in range(3):
        with svc.db.write() as conn:
            batches.begin_attempt(conn, batch_id, "ingest")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert calls == []
    (result,) = results(svc, batch_id).values()
    assert "its worker died during it" in result["error"]["error"]["message"]
    assert record.num_errored == 1


def test_storage_faults_during_ingest_do_not_use_up_its_attempts(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    real_iter_lines = ingest.iter_lines
    calls: list[int] = []

    def disk_full_at_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_iter_lines(*args, **kwargs)

    monkeypatch.setattr(ingest, "iter_lines", disk_full_at_first)
    batch_id = submit_api(svc, "openai", ["a", "b"])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert len(calls) == 4
    assert record.status == "completed" and record.num_succeeded == 2
    assert attempts(svc, batch_id, "ingest").num_attempts == 0


# --- finalize -----------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_finalize_that_always_fails_on_one_result_ends_with_every_other_result(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    name = "format_message_result" if api == "anthropic" else "format_line"
    real_format = getattr(finalize, name)
    calls: list[int] = []

    def fails_on_bad(row: Any) -> bytes:
        if row.custom_id == "bad" and row.status == RequestStatus.SUCCEEDED:
            calls.append(1)
            raise RecursionError(RECURSION)
        return bytes(real_format(row))

    monkeypatch.setattr(finalize, name, fails_on_bad)
    batch_id = submit_api(svc, api, ["good", "bad", "fine"])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert len(calls) == 2 + 1  # two attempts, then the salvage that writes the rest
    assert record.status == "completed"
    # the counts follow the lines: the result that could not be written is an error
    assert (record.num_total, record.num_succeeded, record.num_errored) == (3, 2, 1)
    if api == "anthropic":
        by_id = results(svc, batch_id)
        assert {k: v["type"] for k, v in by_id.items()} == {
            "good": "succeeded",
            "bad": "errored",
            "fine": "succeeded",
        }
        assert "could not be written (RecursionError" in by_id["bad"]["error"]["error"]["message"]
    else:
        lines = {x["custom_id"]: x for x in result_lines(svc, record)}
        assert sorted(lines) == ["bad", "fine", "good"]
        assert lines["good"]["response"]["status_code"] == 200
        assert lines["bad"]["response"] is None
        assert lines["bad"]["error"]["code"] == "result_unwritable"
        assert RECURSION in lines["bad"]["error"]["message"]


def test_finalize_that_cannot_even_salvage_ends_without_results_saying_why(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    calls: list[int] = []
    monkeypatch.setattr(batch_requests, "iter_finished", always_failing(calls))
    batch_id = submit_api(svc, "openai", ["a", "b"])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert len(calls) == 2 + 1
    assert record.status == "completed" and record.num_succeeded == 2
    assert record.output_file_id is None and record.error_file_id is None
    assert record.errors is not None and record.errors[0]["code"] == "results_unavailable"
    assert "finalize failed 2 times" in record.errors[0]["message"]
    assert RECURSION in record.errors[0]["message"]


# --- cancel -------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_cancel_ends_a_batch_whose_ingest_keeps_failing_without_waiting_for_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    # Many attempts, each followed by a long pause: only the cancel can end it soon.
    monkeypatch.setattr(dispatcher, "backoff_seconds", lambda attempt: 60.0)
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=50)
    calls: list[int] = []
    monkeypatch.setattr(ingest, "iter_lines", always_failing(calls))
    monkeypatch.setattr(message_batch_input, "iter_requests", always_failing(calls))
    batch_id = submit_api(svc, api, ["a", "b", "c"])
    cancelled_at: list[float] = []

    async def cancel_after_a_failure(record: batches.BatchRecord) -> bool:
        if not calls:
            return False
        with svc.db.write() as conn:
            batches.request_cancel(conn, batch_id, "default")
        cancelled_at.append(time.monotonic())
        return True

    record = asyncio.run(run_until(svc, batch_id, TERMINAL, action=cancel_after_a_failure))
    # one housekeeping pass (0.5 s) and the cancel itself; the ingest's pause is 60 s
    assert time.monotonic() - cancelled_at[0] < 5
    assert record.status == "cancelled" and record.cancelled_at
    assert len(calls) == 1
    if api == "anthropic":
        assert results(svc, batch_id) == {key: {"type": "canceled"} for key in "abc"}
        assert record.num_cancelled == record.num_total == 3
        assert views.message_batch(record, "http://x").processing_status == "ended"
    else:  # as OpenAI: a batch cancelled while validating counts no requests
        assert (record.num_total, record.num_cancelled) == (0, 0)
        assert record.output_file_id is None and record.error_file_id is None


def test_cancel_of_a_never_ingested_message_batch_replaces_rows_a_dead_ingest_left(
    tmp_path: Path, database_url: str
) -> None:
    svc = echo_service(tmp_path, database_url)
    batch_id = submit_api(svc, "anthropic", ["a", "b", "c"])
    # An ingest queued one row, then its worker died; the cancel came before another.
    with svc.db.write() as conn:
        batch_requests.insert_many(
            conn,
            [
                {
                    "id": ids.new_request_id(),
                    "batch_id": batch_id,
                    "line": 1,
                    "custom_id": "a",
                    "url": "/v1/messages",
                    "body": "{}",
                    "status": RequestStatus.QUEUED,
                }
            ],
        )
        batches.request_cancel(conn, batch_id, "default", api="anthropic")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "cancelled" and record.num_cancelled == record.num_total == 3
    assert results(svc, batch_id) == {key: {"type": "canceled"} for key in "abc"}
    assert not svc.blobs.exists(blob_store.message_batch_requests(batch_id))


def test_cancel_that_always_fails_still_ends_the_batch_cancelled(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=2)
    calls: list[int] = []
    monkeypatch.setattr(unqueued, "iter_custom_ids", always_failing(calls))
    batch_id = submit_api(svc, "anthropic", ["a", "b"])
    with svc.db.write() as conn:
        batches.request_cancel(conn, batch_id, "default", api="anthropic")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert len(calls) == 2
    assert record.status == "cancelled"
    assert views.message_batch(record, "http://x").processing_status == "ended"
    assert attempts(svc, batch_id, "cancel").num_attempts == 2


# --- upstream Batch API passthrough -------------------------------------------------------


class BrokenUpstream:
    """A provider client whose submit fails as a bug would: not a refusal, not an outage."""

    style = "openai"
    max_requests = 100

    def __init__(self, calls: list[int]) -> None:
        self.calls = calls

    async def submit(self, name: str, carried: list[Any]) -> tuple[str, str]:
        self.calls.append(len(carried))
        raise RecursionError(RECURSION)

    async def cancel(self, upstream_id: str) -> None:
        raise AssertionError("never created, so never cancelled")

    async def close(self) -> None:
        pass


def test_upstream_batch_that_always_fails_ends_its_requests_after_their_attempts(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = OpenAIBatchUpstream(base_url="http://127.0.0.1:9/v1", model="echo")
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        models=[
            ModelSettings(name="echo", engine="echo"),
            ModelSettings(name="gpt-up", engine="openai-batch", upstream=upstream),
        ],
        worker=FAST_WORKER.model_copy(update={"max_attempts": 2}),
    )
    svc = service(settings, EchoEngine("echo"))
    calls: list[int] = []
    broken = BrokenUpstream(calls)
    monkeypatch.setattr(passthrough.Passthrough, "_client", lambda self, model: broken)
    lines = [chat_line("up-1", "x", model="gpt-up"), chat_line("up-2", "y", model="gpt-up")]
    batch_id = submit(svc, lines)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert calls == [2, 2]  # packed, then adopted once more: the attempt limit
    assert record.status == "completed"
    assert (record.num_succeeded, record.num_errored) == (0, 2)
    by_id = {x["custom_id"]: x for x in result_lines(svc, record)}
    assert sorted(by_id) == ["up-1", "up-2"]
    for custom_id in ("up-1", "up-2"):
        error = by_id[custom_id]["error"]
        assert error["code"] == "upstream_failed"
        assert "after 2 attempts" in error["message"] and RECURSION in error["message"]
