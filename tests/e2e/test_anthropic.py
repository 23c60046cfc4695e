"""Anthropic's API end to end: the official SDK, the real server, the real vLLM engine.

Message Batches (create, retrieve, list, results, cancel, delete) and Messages
(`messages.create`, `messages.stream`), every result line and stream event checked
against the SDK's own types.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import types as sdk
from anthropic.types.messages import MessageBatch as SDKMessageBatch
from anthropic.types.messages import MessageBatchIndividualResponse as SDKResult

from tests.conftest import CHAT_MODEL, LiveServer
from tests.sdk import assert_round_trip, message_batch_results

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name a fruit that is yellow.",
    "What do bees make?",
    "How many legs does a spider have?",
]
EVENT_TYPES = {
    "message_start": sdk.RawMessageStartEvent,
    "content_block_start": sdk.RawContentBlockStartEvent,
    "content_block_delta": sdk.RawContentBlockDeltaEvent,
    "content_block_stop": sdk.RawContentBlockStopEvent,
    "message_delta": sdk.RawMessageDeltaEvent,
    "message_stop": sdk.RawMessageStopEvent,
}


def params(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "max_tokens": 16,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def sdk_args(request: dict[str, Any]) -> dict[str, Any]:
    """`params` as SDK keyword arguments: this SDK has no `temperature` argument any more,
    so it travels in the body as older SDKs and the batch `params` send it."""
    args = dict(request)
    temperature = args.pop("temperature")
    return {**args, "extra_body": {"temperature": temperature}}


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 600) -> Any:
    """Poll until ended; while processing, every request counts as `processing`."""
    deadline = time.monotonic() + timeout
    while (batch := client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        counts = batch.request_counts
        assert (counts.succeeded, counts.errored, counts.canceled, counts.expired) == (0, 0, 0, 0)
        assert time.monotonic() < deadline, f"batch {batch_id} did not end"
        time.sleep(0.2)
    return batch


def raw_results(batch: Any) -> list[dict[str, Any]]:
    response = httpx.get(batch.results_url, headers={"accept": "application/binary"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    for line in lines:
        assert_round_trip(SDKResult, line)
    return lines


def sse_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, line.removeprefix("data: ")))
            name = None
    return events


def test_message_batch_end_to_end(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    requests: list[dict[str, Any]] = [
        {"custom_id": f"q-{i}", "params": params(q)} for i, q in enumerate(QUESTIONS)
    ]
    requests += [
        {"custom_id": "q-again", "params": params(QUESTIONS[0])},
        {"custom_id": "bad-temperature", "params": params("hi", temperature=5)},
        {"custom_id": "with-system", "params": params("Hello!", system="Answer in French.")},
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert isinstance(batch, SDKMessageBatch) and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == len(requests)
    assert batch.id in [b.id for b in client.messages.batches.list()]

    batch = wait_ended(client, batch.id)
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (0, len(requests) - 1, 1)
    assert batch.ended_at is not None and batch.ended_at >= batch.created_at

    results = {r.custom_id: r.result for r in message_batch_results(client, batch.id)}
    assert sorted(results) == sorted(r["custom_id"] for r in requests)  # each exactly once
    lines = {line["custom_id"]: line["result"] for line in raw_results(batch)}
    bad = lines["bad-temperature"]
    assert bad["type"] == "errored" and bad["error"]["error"]["type"] == "invalid_request_error"
    assert "temperature" in bad["error"]["error"]["message"]
    for custom_id, result in lines.items():
        if custom_id == "bad-temperature":
            continue
        assert result["type"] == "succeeded"
        message = result["message"]
        assert message["model"] == CHAT_MODEL and message["content"][0]["text"]
        assert message["stop_reason"] in ("end_turn", "max_tokens")
        assert 0 < message["usage"]["output_tokens"] <= 16
    # greedy decoding (fp32 engine): the same request gives the same reply in one batch,
    # and the same reply in real time: both paths share one translation and one engine
    text = lines["q-0"]["message"]["content"][0]["text"]
    assert lines["q-again"]["message"]["content"][0]["text"] == text
    live = client.messages.create(**sdk_args(params(QUESTIONS[0])))
    assert live.content[0].text == text  # type: ignore[union-attr]

    deleted = client.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_cancel_accounts_for_every_custom_id(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    story = "Write a long, detailed story about a lighthouse, part {}."
    requests = [
        {"custom_id": f"long-{i}", "params": params(story.format(i), max_tokens=400)}
        for i in range(30)
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    deadline = time.monotonic() + 120
    while httpx.get(f"{real_server.base_url}/health").json()["worker"]["in_flight"] == 0:
        assert time.monotonic() < deadline, "the batch never started running"
        time.sleep(0.05)
    canceling = client.messages.batches.cancel(batch.id)  # mid-run
    assert canceling.processing_status in ("canceling", "ended")
    assert canceling.cancel_initiated_at is not None
    batch = wait_ended(client, batch.id)
    counts = batch.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled == len(requests)
    lines = raw_results(batch)
    assert sorted(line["custom_id"] for line in lines) == sorted(r["custom_id"] for r in requests)
    canceled = [line for line in lines if line["result"] == {"type": "canceled"}]
    assert len(canceled) == counts.canceled
    with pytest.raises(anthropic.ConflictError):
        client.messages.batches.cancel(batch.id)


def test_messages_create(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    message = client.messages.create(
        **sdk_args(params("Describe the sea in one sentence.", max_tokens=30, stop_sequences=["e"]))
    )
    assert isinstance(message, sdk.Message) and message.id.startswith("msg_")
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "e"
    assert "e" not in message.content[0].text  # type: ignore[union-attr]
    assert message.usage.input_tokens > 0

    short = client.messages.create(**sdk_args(params("Count from one to fifty.", max_tokens=3)))
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3

    raw = httpx.post(
        f"{real_server.base_url}/v1/messages",
        json=params("Hi!", system=[{"type": "text", "text": "Be brief."}]),
        headers={"x-api-key": "test", "anthropic-version": "2023-06-01"},
    )
    assert raw.status_code == 200
    assert_round_trip(sdk.Message, raw.json())

    prefill = client.messages.create(
        **sdk_args(
            params(
                "What is the capital of France?",
                messages=[
                    {"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": "The capital of France is"},
                ],
            )
        )
    )
    assert prefill.content[0].text  # type: ignore[union-attr]

    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.create(**sdk_args(params("word " * 3000, max_tokens=10)))
    assert "context length" in excinfo.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(**sdk_args({**params("hi"), "model": "no-such-model"}))


def test_messages_stream(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    request = params("Tell me about the moon.", max_tokens=24)
    with client.messages.stream(**sdk_args(request)) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert types[0] == "message_start" and types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in types
    whole = client.messages.create(**sdk_args(request))
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    total_input = (final.usage.input_tokens or 0) + (final.usage.cache_read_input_tokens or 0)
    assert total_input == whole.usage.input_tokens + (whole.usage.cache_read_input_tokens or 0)

    # the raw events, each one round-tripped through the SDK's own event type
    with httpx.stream(
        "POST", f"{real_server.base_url}/v1/messages", json={**request, "stream": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    text = ""
    for name, data in events:
        body = json.loads(data)
        assert body["type"] == name
        assert_round_trip(EVENT_TYPES[name], body)
        if name == "message_start":
            assert body["message"]["usage"]["input_tokens"] > 0  # known before the first token
        if name == "content_block_delta":
            text += body["delta"]["text"]
    assert text == whole.content[0].text  # type: ignore[union-attr]
