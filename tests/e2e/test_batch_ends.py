"""Every accepted batch ends, seen through the official SDKs on the real server (echo
engine): an ingest that always fails, a cancel while it keeps failing, and the ~3,000-deep
Message Batch of issue 15 (bug 2), which is either refused at create or ends.

The worker's side of this is in tests/integration/test_batch_ends.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from freight.config import Settings
from freight.protocol import message_batch_input
from freight.service.runtime import Service
from freight.worker import dispatcher, ingest
from tests.conftest import LiveServer, chat_line, write_jsonl
from tests.e2e.test_message_batches_api import request, wait_ended
from tests.sdk import message_batch_results
from tests.waiting import wait_until

RECURSION = "maximum recursion depth exceeded while encoding a JSON object"


def always_failing(calls: list[int]) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RecursionError(RECURSION)

    return fail


def results_of(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    by_id: dict[str, Any] = {}
    for result in message_batch_results(client, batch_id):
        line = result.to_dict(mode="json")
        assert line["custom_id"] not in by_id  # each exactly once
        by_id[line["custom_id"]] = line["result"]
    return by_id


@pytest.mark.usefixtures("no_backoff")  # its attempts are counted, not their pauses
def test_message_batch_whose_ingest_always_fails_ends_with_each_request_errored(
    echo_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(message_batch_input, "iter_requests", always_failing(calls))
    client = echo_server.anthropic()
    batch = client.messages.batches.create(requests=[request("a"), request("b")])  # type: ignore[list-item]
    ended = wait_ended(client, batch.id)
    assert len(calls) == 3  # [worker] max_batch_step_attempts, by default
    assert ended.request_counts.errored == 2 and ended.request_counts.processing == 0
    by_id = results_of(client, batch.id)
    assert sorted(by_id) == ["a", "b"]
    for result in by_id.values():
        assert result["type"] == "errored"
        assert result["error"]["error"]["type"] == "api_error"
        assert RECURSION in result["error"]["error"]["message"]
    assert client.messages.batches.delete(batch.id).id == batch.id


@pytest.fixture
def patient_server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """An echo server whose failed batch steps wait 60 s before their next attempt (set
    before its worker is built, which is when the worker takes the pause function)."""
    monkeypatch.setattr(dispatcher, "backoff_seconds", lambda attempt: 60.0)
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


def test_cancel_ends_a_message_batch_whose_ingest_keeps_failing(
    patient_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(message_batch_input, "iter_requests", always_failing(calls))
    client = patient_server.anthropic()
    batch = client.messages.batches.create(requests=[request("a"), request("b")])  # type: ignore[list-item]
    wait_until(lambda: calls, what="the ingest to fail once (it then waits 60 s to try again)")
    assert client.messages.batches.cancel(batch.id).processing_status in ("canceling", "ended")
    ended = wait_ended(client, batch.id, timeout=5)
    assert ended.request_counts.canceled == 2 and ended.ended_at is not None
    assert results_of(client, batch.id) == {"a": {"type": "canceled"}, "b": {"type": "canceled"}}
    assert client.messages.batches.delete(batch.id).id == batch.id


@pytest.mark.usefixtures("no_backoff")  # its attempts are counted, not their pauses
def test_openai_batch_whose_ingest_always_fails_ends_failed_saying_why(
    echo_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ingest, "iter_lines", always_failing([]))
    client = echo_server.openai()
    lines = [chat_line("a", "x", model="echo")]
    uploaded = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 60
    while (batch := client.batches.retrieve(batch.id)).status != "failed":
        assert batch.status == "validating" and time.monotonic() < deadline, batch.status
        time.sleep(0.05)
    (error,) = batch.errors.data
    assert error.code == "ingest_failed" and error.line is None
    assert "ingest failed 3 times" in error.message and RECURSION in error.message


def test_deep_message_batch_is_refused_at_create_or_ends(echo_server: LiveServer) -> None:
    # Issue 15, bug 2: accepted with 200, then in_progress forever; results and delete 409.
    deep = "[" * 3000 + "]" * 3000
    body = (
        '{"requests":[{"custom_id":"a","params":{"model":"echo","max_tokens":4,'
        '"messages":[{"role":"user","content":"hi"}],"metadata":' + deep + "}}]}"
    )
    response = httpx.post(  # raw: the SDK's own encoder would not go this deep
        f"{echo_server.base_url}/v1/messages/batches",
        content=body.encode(),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        timeout=30,
    )
    if response.status_code == 400:  # refused, in Anthropic's error shape
        assert response.json()["error"]["type"] == "invalid_request_error"
        return
    assert response.status_code == 200, response.text
    client = echo_server.anthropic()
    batch_id = response.json()["id"]
    ended = wait_ended(client, batch_id)
    assert ended.request_counts.errored == 1
    (result,) = results_of(client, batch_id).values()
    assert result["type"] == "errored"
    assert client.messages.batches.delete(batch_id).id == batch_id
