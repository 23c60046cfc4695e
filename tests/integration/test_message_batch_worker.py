"""Anthropic Message Batches on the shared worker (echo engine): ingest, results, expiry,
retries, cancel; and the worker making room for real-time requests.

These isolate Freight's machinery; the same behaviours are proven with the real engine
and the official SDK in tests/e2e/test_anthropic.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.types.messages import MessageBatchIndividualResponse as SDKResult

from freight import ids
from freight.config import DEFAULT_EMBEDDING_MODEL
from freight.engines.echo import EchoEngine
from freight.service.intake import create_message_batch
from freight.service.runtime import Service
from freight.store import batch_requests, batches, blob_store
from tests.conftest import chat_line, make_settings
from tests.integration.test_worker import expire_after, run_until, service
from tests.integration.test_worker import submit as submit_openai
from tests.sdk import assert_round_trip
from tests.waiting import wait_until_async

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def submit(svc: Service, custom_ids: list[str], window: str = "24h", **params: Any) -> str:
    body = {
        "requests": [
            {
                "custom_id": custom_id,
                "params": {
                    "model": "echo",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": f"say {custom_id}"}],
                    **params,
                },
            }
            for custom_id in custom_ids
        ]
    }
    batch_id = ids.new_id("msgbatch_")
    with svc.blobs.create(blob_store.message_batch_requests(batch_id)) as fh:
        fh.write(json.dumps(body).encode())
    return create_message_batch(svc, "default", batch_id, window=window).id


def results(svc: Service, batch_id: str) -> dict[str, Any]:
    with svc.blobs.open(blob_store.message_batch_results(batch_id)) as fh:
        lines = [json.loads(line) for line in fh]
    for line in lines:
        assert_round_trip(SDKResult, line)
    by_id = {line["custom_id"]: line["result"] for line in lines}
    assert len(by_id) == len(lines)  # each custom_id exactly once
    return by_id


def test_message_batch_runs_on_the_shared_lifecycle(tmp_path: Path, database_url: str) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    names = [f"r{i}" for i in range(30)]
    batch_id = submit(svc, names)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed" and record.api == "anthropic"
    assert (record.num_total, record.num_succeeded, record.model) == (30, 30, "echo")
    by_id = results(svc, batch_id)
    assert sorted(by_id) == sorted(names)
    assert by_id["r7"]["message"]["content"] == [{"type": "text", "text": "say r7"}]
    with svc.db.read() as conn:
        history = [e["to_status"] for e in batches.events(conn, batch_id)]
    assert history == ["validating", "in_progress", "finalizing", "completed"]
    # the create body is gone once its requests are queued; no OpenAI files were made
    assert not svc.blobs.exists(blob_store.message_batch_requests(batch_id))
    assert record.output_file_id is None and record.error_file_id is None


def test_expiry_turns_the_rest_into_expired_results(tmp_path: Path, database_url: str) -> None:
    svc = service(
        make_settings(tmp_path, database_url=database_url), EchoEngine("echo", delay_seconds=0.05)
    )
    svc.settings.worker.max_in_flight = 4
    batch_id = submit(svc, [f"r{i}" for i in range(400)])
    record = asyncio.run(run_until(svc, batch_id, TERMINAL, action=expire_after(svc, 8)))
    assert record.status == "expired"
    by_id = results(svc, batch_id)
    expired = [k for k, v in by_id.items() if v == {"type": "expired"}]
    succeeded = [k for k, v in by_id.items() if v["type"] == "succeeded"]
    assert len(by_id) == 400 and len(expired) + len(succeeded) == 400
    assert record.num_expired == len(expired) > 0 and len(succeeded) > 0


def test_a_request_the_worker_gives_up_on_is_an_api_error(
    tmp_path: Path, database_url: str
) -> None:
    engine = EchoEngine("echo")
    engine.fail_next = 100
    settings = make_settings(tmp_path, database_url=database_url)
    settings.worker.max_attempts = 2
    svc = service(settings, engine)
    batch_id = submit(svc, ["r0"])
    asyncio.run(run_until(svc, batch_id, TERMINAL))
    result = results(svc, batch_id)["r0"]
    assert result["type"] == "errored"
    assert result["error"]["error"]["type"] == "api_error"
    assert "after 2 attempts" in result["error"]["error"]["message"]
    assert result["error"]["request_id"].startswith("req_")


def test_a_message_naming_an_embeddings_model_errors_only_that_request(
    tmp_path: Path, database_url: str
) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit(svc, ["ok"])
    embed_id = submit(svc, ["embed"], model=DEFAULT_EMBEDDING_MODEL)
    asyncio.run(run_until(svc, batch_id, TERMINAL))
    record = asyncio.run(run_until(svc, embed_id, TERMINAL))
    assert record.status == "completed" and record.num_errored == 1
    error = results(svc, embed_id)["embed"]
    assert error["type"] == "errored"
    assert error["error"]["error"]["type"] == "invalid_request_error"
    assert "is an embeddings model: it serves /v1/embeddings" in error["error"]["error"]["message"]
    assert results(svc, batch_id)["ok"]["type"] == "succeeded"


def test_cancel_before_ingest_cancels_every_request(tmp_path: Path, database_url: str) -> None:
    svc = service(make_settings(tmp_path, database_url=database_url), EchoEngine("echo"))
    batch_id = submit(svc, ["a", "b", "c"])
    with svc.db.write() as conn:
        batches.request_cancel(conn, batch_id, "default", api="anthropic")
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "cancelled" and record.num_cancelled == 3
    assert results(svc, batch_id) == {key: {"type": "canceled"} for key in "abc"}


@pytest.mark.parametrize(("preempt", "given_back"), [(True, 6), (False, 4)])
def test_worker_makes_room_for_real_time_requests_and_loses_nothing(
    tmp_path: Path, database_url: str, preempt: bool, given_back: int
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    settings.engine.max_num_seqs = 4
    settings.worker.max_in_flight = 8
    settings.worker.realtime_batch_window = 2
    settings.worker.realtime_hold_seconds = 0
    settings.worker.realtime_preempt = preempt
    svc = service(settings, EchoEngine("echo", delay_seconds=0.2))
    worker = svc.worker
    assert worker is not None
    batch_id = submit_openai(svc, [chat_line(f"r{i}", "x", model="echo") for i in range(24)])
    realtime = svc.engines.realtime
    seen: dict[str, int] = {}

    async def real_time_burst(record: batches.BatchRecord) -> bool:
        if worker.num_in_flight < 8:
            return False
        with realtime.track():  # a real-time request runs: the window shrinks to 2
            await wait_until_async(
                lambda: worker.num_given_back > 0 and worker.num_in_flight <= 2,
                what="the worker to make room",
            )
            seen["given_back"] = worker.num_given_back
            seen["in_flight"] = worker.num_in_flight
            # No batch request is admitted while it runs: the running ones drain, and
            # passes of the loop that could admit go by without replacing them.
            await wait_until_async(lambda: worker.num_in_flight == 0, what="a drained engine")
            num_passes = worker.num_passes
            await wait_until_async(lambda: worker.num_passes >= num_passes + 3, what="3 passes")
            seen["in_flight_later"] = worker.num_in_flight
        return True

    record = asyncio.run(run_until(svc, batch_id, TERMINAL, action=real_time_burst))
    # preempt: all 6 beyond the window at once, running or not; without: the 4 queued
    # beyond the engine's running slots, unstarted, and the running ones drain
    assert seen["given_back"] == given_back and seen["in_flight"] <= 2
    assert seen["in_flight_later"] == 0  # the 0.2 s requests drained, none replaced
    assert record.status == "completed" and record.num_succeeded == 24
    with svc.db.read() as conn:
        assert batch_requests.count_by_status(conn, batch_id) == {"succeeded": 24}
