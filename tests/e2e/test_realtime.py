"""Real-time OpenAI endpoints end to end: the official SDK, the real server, the real engine.

POST /v1/chat/completions and /v1/completions, non-streaming and streamed (SSE exactly
as OpenAI's: chunks, the usage chunk when asked for, `data: [DONE]`), every chunk
round-tripped through the SDK's own types; and a real-time request answered while a
batch keeps the same engine busy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion as SDKCompletion
from openai.types.chat import ChatCompletion as SDKChatCompletion
from openai.types.chat import ChatCompletionChunk as SDKChatCompletionChunk

from tests.conftest import CHAT_MODEL, LiveServer, chat_line, wait_for_batch, write_jsonl
from tests.sdk import assert_round_trip
from tests.spec import assert_matches

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Name three colours."}]


def sse_data(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
    ]


def post_stream(server: LiveServer, path: str, body: dict[str, Any]) -> list[str]:
    with httpx.stream("POST", f"{server.base_url}{path}", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_data(response)


def test_chat_completion(real_server: LiveServer) -> None:
    client = real_server.openai()
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=MESSAGES,
        max_tokens=16,
        temperature=0,  # type: ignore[arg-type]
    )
    assert isinstance(completion, SDKChatCompletion)
    assert completion.choices[0].message.content
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 16
    raw = httpx.post(
        f"{real_server.base_url}/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 16, "temperature": 0},
    ).json()
    assert_round_trip(SDKChatCompletion, raw)
    assert_matches("CreateChatCompletionResponse", raw)
    assert raw["choices"][0]["message"]["content"] == completion.choices[0].message.content


def test_chat_completion_stream(real_server: LiveServer) -> None:
    client = real_server.openai()
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    whole = client.chat.completions.create(**body)  # type: ignore[call-overload]
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**body, stream=True)  # type: ignore[call-overload]
        if chunk.choices
    ]
    assert "".join(pieces) == whole.choices[0].message.content

    data = post_stream(
        real_server,
        "/v1/chat/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for chunk in chunks:
        assert_round_trip(SDKChatCompletionChunk, chunk)
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == chunks[0]["id"]
    first, last = chunks[0], chunks[-1]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert last["choices"] == [] and last["usage"] == whole.usage.model_dump(exclude_unset=True)  # type: ignore[union-attr]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == whole.choices[0].finish_reason
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == whole.choices[0].message.content

    no_usage = post_stream(real_server, "/v1/chat/completions", {**body, "stream": True})
    assert no_usage[-1] == "[DONE]"
    assert all("usage" not in json.loads(d) for d in no_usage[:-1])


def test_completions(real_server: LiveServer) -> None:
    client = real_server.openai()
    completion = client.completions.create(
        model=CHAT_MODEL,
        prompt=["The capital of France is", "1, 2, 3,"],
        max_tokens=8,
        temperature=0,
    )
    assert isinstance(completion, SDKCompletion) and len(completion.choices) == 2
    raw = httpx.post(
        f"{real_server.base_url}/v1/completions",
        json={"model": CHAT_MODEL, "prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0},
    ).json()
    assert_round_trip(SDKCompletion, raw)
    assert_matches("CreateCompletionResponse", raw)
    assert raw["choices"][0]["text"] == completion.choices[1].text

    data = post_stream(
        real_server,
        "/v1/completions",
        {
            "model": CHAT_MODEL,
            "prompt": ["The capital of France is", "1, 2, 3,"],
            "max_tokens": 8,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for chunk in chunks:
        assert_round_trip(SDKCompletion, chunk, as_streamed=True)
    texts = ["", ""]
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["text"]
    assert texts == [c.text for c in completion.choices]
    assert chunks[-1]["usage"] == completion.usage.model_dump(exclude_unset=True)  # type: ignore[union-attr]


def test_bad_real_time_requests_are_400_or_404(real_server: LiveServer) -> None:
    client = real_server.openai()
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "word " * 3000}], max_tokens=4
        )
    assert excinfo.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=0)
    assert excinfo.value.body["param"] == "max_tokens"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream_options={"include_usage": True}
        )
    assert excinfo.value.body["param"] == "stream_options"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)


def test_real_time_requests_are_answered_while_a_batch_runs(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    lines = [
        chat_line(f"bulk-{i}", f"Write a paragraph about topic number {i}.", max_tokens=64)
        for i in range(24)
    ]
    uploaded = client.files.create(
        file=write_jsonl(tmp_path / "bulk.jsonl", lines), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while httpx.get(f"{real_server.base_url}/health").json()["worker"]["in_flight"] == 0:
        assert time.monotonic() < deadline, "the batch never started running"
        time.sleep(0.05)
    answers = [
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=8)
        for _ in range(3)
    ]
    assert all(a.choices[0].message.content for a in answers)
    batch = wait_for_batch(client, batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == len(lines)
