"""The Anthropic Message Batches API's own logic through the official SDK: validation,
errors in Anthropic's shape, paging both ways, delete rules, result lines.

The echo engine serves these: what is tested is Freight's handling of the API, which
does not depend on the engine. Generation with the real engine is in test_anthropic.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types.messages import MessageBatch as SDKMessageBatch
from anthropic.types.messages import MessageBatchIndividualResponse as SDKResult

from freight.service.runtime import Service
from tests.conftest import LiveServer, make_settings, wait_for_message_batch
from tests.sdk import assert_round_trip, message_batch_results


def request(custom_id: str, content: str = "hello there", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "echo",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 60) -> Any:
    return wait_for_message_batch(client, batch_id, timeout=timeout)


def raw_batch(server: LiveServer, batch_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/v1/messages/batches/{batch_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("requests", "fragment"),
    [
        ([request("ok"), request("has space")], "requests.1.custom_id"),
        ([request("ok"), request("x" * 65)], "requests.1.custom_id"),
        ([request("ok"), request("")], "requests.1.custom_id"),
        ([request("a"), request("b"), request("a")], "requests.2.custom_id"),
        ([], "at least one request"),
        ([request("a"), {"custom_id": "b"}], "requests.1.params"),
        ([{**request("a"), "priority": 1}], "requests.0.priority"),
    ],
)
def test_bad_envelopes_are_400_naming_the_index(
    echo_server: LiveServer, requests: list[Any], fragment: str
) -> None:
    client = echo_server.anthropic()
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.batches.create(requests=requests)
    body = excinfo.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert fragment in body["error"]["message"]
    assert client.messages.batches.list().data == []  # nothing was created


def test_duplicate_custom_id_message_names_both_indexes(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.batches.create(requests=[request("a"), request("b"), request("a")])
    message = excinfo.value.body["error"]["message"]  # type: ignore[index]
    assert "requests.2.custom_id" in message and "requests.0" in message and "unique" in message


def test_over_limit_batches_are_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.limits.max_message_batch_requests = 3
    settings.limits.max_message_batch_bytes = 4000
    server = LiveServer(Service(settings)).start()
    try:
        client = server.anthropic()
        with pytest.raises(anthropic.BadRequestError) as excinfo:
            client.messages.batches.create(requests=[request(f"r{i}") for i in range(4)])
        assert "more than 3 requests" in excinfo.value.body["error"]["message"]  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError) as too_large:
            client.messages.batches.create(requests=[request("big", "word " * 1000)])
        assert too_large.value.status_code == 413
        assert too_large.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
        assert "4000 bytes" in too_large.value.body["error"]["message"]  # type: ignore[index]
        batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(3)])
        assert wait_ended(client, batch.id).request_counts.succeeded == 3
    finally:
        server.stop()


def test_invalid_params_error_only_their_request(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    batch = client.messages.batches.create(
        requests=[
            request("ok-1"),
            request("zero-tokens", max_tokens=0),
            request("unknown-param", container="c"),
            request("no-such-model", model="no-such-model"),
            request("streamed", stream=True),
            request("ok-2", "two words"),
        ]
    )
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 6 and batch.results_url is None
    batch = wait_ended(client, batch.id)
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (2, 4, 0)
    assert batch.ended_at is not None and batch.results_url is not None
    results = {r.custom_id: r for r in message_batch_results(client, batch.id)}
    assert sorted(results) == sorted(
        ["ok-1", "zero-tokens", "unknown-param", "no-such-model", "streamed", "ok-2"]
    )
    assert results["ok-2"].result.type == "succeeded"
    assert results["ok-2"].result.message.content[0].text == "two words"  # type: ignore[union-attr]
    expected = {
        "zero-tokens": ("invalid_request_error", "max_tokens"),
        "unknown-param": ("invalid_request_error", "container"),
        "no-such-model": ("not_found_error", "no-such-model"),
        "streamed": ("invalid_request_error", "stream"),
    }
    for custom_id, (error_type, fragment) in expected.items():
        result = results[custom_id].result
        assert result.type == "errored"
        assert result.error.type == "error" and result.error.request_id  # type: ignore[union-attr]
        assert result.error.error.type == error_type  # type: ignore[union-attr]
        assert fragment in result.error.error.message  # type: ignore[union-attr]


def test_result_lines_round_trip_through_the_sdk_types(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    batch = client.messages.batches.create(
        requests=[request("a", "one two three", max_tokens=2), request("b", max_tokens=0)]
    )
    batch = wait_ended(client, batch.id)
    raw = httpx.get(batch.results_url, headers={"accept": "application/binary"})  # type: ignore[arg-type]
    assert raw.status_code == 200
    lines = [json.loads(line) for line in raw.text.splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert_round_trip(SDKResult, line)
    by_id = {line["custom_id"]: line["result"] for line in lines}
    message = by_id["a"]["message"]
    assert message["stop_reason"] == "max_tokens" and message["content"][0]["text"] == "one two"
    assert message["usage"]["output_tokens"] == 2
    assert_round_trip(SDKMessageBatch, raw_batch(echo_server, batch.id))


def test_timestamps_are_rfc3339_and_results_url_absolute(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    created = client.messages.batches.create(requests=[request("a")])
    body = raw_batch(echo_server, created.id)
    assert body["created_at"].endswith("Z") and "T" in body["created_at"]
    assert (created.expires_at - created.created_at).total_seconds() == 86400
    ended = wait_ended(client, created.id)
    assert ended.results_url == (f"{echo_server.base_url}/v1/messages/batches/{created.id}/results")


def test_public_base_url_makes_results_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", public_base_url="https://freight.example.com/")
    server = LiveServer(Service(settings)).start()
    try:
        client = server.anthropic()
        batch = wait_ended(client, client.messages.batches.create(requests=[request("a")]).id)
        assert batch.results_url == (
            f"https://freight.example.com/v1/messages/batches/{batch.id}/results"
        )
    finally:
        server.stop()


def test_list_is_newest_first_and_pages_both_ways(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    created = [client.messages.batches.create(requests=[request("a")]).id for _ in range(5)]
    newest_first = created[::-1]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    assert (page.first_id, page.last_id) == (newest_first[0], newest_first[1])
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first  # after_id
    older = client.messages.batches.list(after_id=newest_first[1], limit=2)
    assert [b.id for b in older.data] == newest_first[2:4] and older.has_more
    newer = client.messages.batches.list(before_id=newest_first[4], limit=2)
    assert [b.id for b in newer.data] == newest_first[2:4] and newer.has_more
    # the SDK pages on with before_id=first_id, towards the newest
    every_newer = [b.id for b in client.messages.batches.list(before_id=newest_first[4], limit=2)]
    assert every_newer == newest_first[2:4] + newest_first[:2]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)
    # OpenAI batches and Message Batches are two views: neither sees the other's batches,
    # and an OpenAI batch file cannot carry /v1/messages bodies
    openai_client = echo_server.openai()
    assert openai_client.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        openai_client.batches.retrieve(created[0])
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.batches.create(
            input_file_id="file-x", endpoint="/v1/messages", completion_window="24h"
        )
    assert "/v1/chat/completions" in excinfo.value.body["message"]  # type: ignore[index]


def test_delete_needs_an_ended_batch(tmp_path: Path) -> None:
    # no worker: the batch stays in progress for as long as the test needs
    server = LiveServer(Service(make_settings(tmp_path / "home"), with_worker=False)).start()
    try:
        client = server.anthropic()
        batch = client.messages.batches.create(requests=[request("a")])
        with pytest.raises(anthropic.ConflictError) as excinfo:
            client.messages.batches.delete(batch.id)
        assert excinfo.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "processing has ended" in excinfo.value.body["error"]["message"]  # type: ignore[index]
        response = httpx.get(f"{server.base_url}/v1/messages/batches/{batch.id}/results")
        assert response.status_code == 409 and response.json()["type"] == "error"
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
        assert client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    finally:
        server.stop()


def test_cancel_then_delete(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    batch = client.messages.batches.create(requests=[request("a")])
    batch = wait_ended(client, batch.id)
    with pytest.raises(anthropic.ConflictError):
        client.messages.batches.cancel(batch.id)
    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(batch.id)


def test_errors_on_anthropic_paths_use_anthropic_shape(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    for call in (
        lambda: client.messages.batches.retrieve("msgbatch_missing"),
        lambda: client.messages.batches.cancel("msgbatch_missing"),
        lambda: client.messages.batches.delete("msgbatch_missing"),
    ):
        with pytest.raises(anthropic.NotFoundError) as excinfo:
            call()
        body = excinfo.value.body
        assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
        assert "msgbatch_missing" in body["error"]["message"] and body["request_id"]
    # an OpenAI batch id is not a Message Batch
    base = echo_server.base_url
    responses = [
        httpx.get(f"{base}/v1/messages/batches/x/nothing"),
        httpx.put(f"{base}/v1/messages/batches"),
        httpx.post(
            f"{base}/v1/messages/batches",
            content=b"{oops",
            headers={"content-type": "application/json"},
        ),
        httpx.post(f"{base}/v1/messages/batches", json={"requests": [], "extra": 1}),
        httpx.post(f"{base}/v1/messages/batches", content=b"x", headers={"content-type": "text"}),
        httpx.get(f"{base}/v1/messages/batches", params={"limit": 0}),
        httpx.post(
            f"{base}/v1/messages", content=b"[1]", headers={"content-type": "application/json"}
        ),
        httpx.post(f"{base}/v1/messages", json={"model": "echo"}),
        httpx.get(f"{base}/v1/messages"),
    ]
    assert [r.status_code for r in responses] == [404, 405, 400, 400, 400, 400, 400, 400, 405]
    for response in responses:
        body = response.json()
        assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
        assert set(body["error"]) == {"type", "message"} and body["error"]["message"]
