"""OpenAI's streamed chunks from engine events, with plain data: order, usage, [DONE]."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from openai.types import Completion as SDKCompletion
from openai.types.chat import ChatCompletionChunk as SDKChatCompletionChunk

from freight.engines.base import Choice, Delta, Generation
from freight.protocol import endpoints
from freight.protocol import stream as streams
from tests.sdk import assert_round_trip


def run_stream(url: str, body: dict[str, Any], per_prompt: list[list[Any]]) -> list[Any]:
    endpoint = endpoints.ENDPOINTS[url]
    parsed = endpoints.parse_body(endpoint, body, in_batch=False)

    async def engine(items: list[Any]) -> AsyncIterator[Delta | Generation]:
        for item in items:
            yield item

    async def collect() -> list[Any]:
        assert endpoint.to_stream is not None
        merged = streams.merge([engine(items) for items in per_prompt])
        return [e.data async for e in endpoint.to_stream(parsed, merged)]

    return asyncio.run(collect())


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "n": 2}


def test_chat_chunks_per_choice_then_usage_then_done() -> None:
    events = [
        Delta(0, "Hel", None, 5, 0),
        Delta(1, "Bye", "length"),
        Delta(0, "lo", "stop"),
        Generation(5, 2, [Choice("Hello", 2, "stop"), Choice("Bye", 1, "length")]),
    ]
    body = {**CHAT, "stream_options": {"include_usage": True}}
    *chunks, done = run_stream("/v1/chat/completions", body, [events])
    assert done == "[DONE]"
    for chunk in chunks:
        assert_round_trip(SDKChatCompletionChunk, chunk)
    choices = [
        (c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
        for c in chunks[:-1]
    ]
    assert choices == [
        (0, {"role": "assistant", "content": "", "refusal": None}, None),
        (0, {"content": "Hel"}, None),
        (1, {"role": "assistant", "content": "", "refusal": None}, None),
        (1, {"content": "Bye"}, None),
        (1, {}, "length"),
        (0, {"content": "lo"}, None),
        (0, {}, "stop"),
    ]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    assert len({c["id"] for c in chunks}) == 1


def test_chat_chunks_without_usage_carry_no_usage_key() -> None:
    events = [Delta(0, "x", "stop"), Generation(1, 0, [Choice("x", 1, "stop")])]
    *chunks, done = run_stream("/v1/chat/completions", {**CHAT, "n": 1}, [events])
    assert done == "[DONE]" and all("usage" not in c for c in chunks)


def test_completion_chunks_index_by_prompt_and_echo() -> None:
    body = {"model": "m", "prompt": ["a", "b"], "stream": True, "echo": True, "max_tokens": 3}
    first = [Delta(0, " x", "stop"), Generation(1, 0, [Choice(" x", 1, "stop")])]
    second = [Delta(0, " y", "length"), Generation(1, 0, [Choice(" y", 1, "length")])]
    *chunks, done = run_stream("/v1/completions", body, [first, second])
    assert done == "[DONE]"
    for chunk in chunks:
        assert_round_trip(SDKCompletion, chunk, as_streamed=True)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "a x", 1: "b y"} and finishes == {0: "stop", 1: "length"}
