"""Forced tool use and Anthropic's output_config.format, with plain data: bodies -> the
engine's schema constraint, Generations and engine events -> tool calls in each API's
shape (checked against the SDKs' own types), and the refusals that name the field."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import types as anthropic_sdk
from openai.types.chat import ChatCompletion as SDKChatCompletion
from openai.types.chat import ChatCompletionChunk as SDKChatCompletionChunk

from freight.engines.base import Choice, Delta, Generation, RequestRejected, ToolCall
from freight.engines.echo import EchoEngine
from freight.protocol import endpoints
from freight.protocol import stream as streams
from tests.sdk import assert_round_trip

MESSAGES = endpoints.ENDPOINTS["/v1/messages"]
CHAT = endpoints.ENDPOINTS["/v1/chat/completions"]
SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["sentiment"],
}
ARGUMENTS = '{"sentiment":"positive"}'
ANTHROPIC_TOOL = {"name": "label", "description": "Label a review.", "input_schema": SCHEMA}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "label", "parameters": SCHEMA, "strict": True},
}


def anthropic_body(**params: Any) -> Any:
    body = {"model": "m", "max_tokens": 40, "messages": [{"role": "user", "content": "Great!"}]}
    return endpoints.parse_body(MESSAGES, {**body, **params}, in_batch=False)


def chat_body(**params: Any) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": "Great!"}]}
    return endpoints.parse_body(CHAT, {**body, **params}, in_batch=False)


def generation(text: str, finish: str = "stop") -> Generation:
    return Generation(10, 0, [Choice(text, 5, finish)])  # type: ignore[arg-type]


async def _events(endpoint: Any, body: Any, items: list[Delta | Generation]) -> list[Any]:
    async def engine() -> AsyncIterator[Delta | Generation]:
        for item in items:
            yield item

    return [e.data async for e in endpoint.to_stream(body, streams.merge([engine()]))]


STREAM = [Delta(0, '{"sentiment":', None, 10, 0), Delta(0, '"positive"}', "stop")]


@pytest.mark.parametrize(
    "choice", [{"type": "tool", "name": "label"}, {"type": "any"}], ids=["named", "any"]
)
def test_a_forced_anthropic_tool_decodes_its_schema_and_answers_tool_use(
    choice: dict[str, Any],
) -> None:
    body = anthropic_body(tools=[ANTHROPIC_TOOL], tool_choice=choice)
    (request,) = MESSAGES.to_generations(body, "r1")
    assert request.sampling.json_output is not None
    assert json.loads(request.sampling.json_output.schema_json or "") == SCHEMA
    assert request.tools_json is not None
    assert json.loads(request.tools_json)[0]["function"]["name"] == "label"
    message = MESSAGES.to_response(body, [generation(ARGUMENTS)])
    assert_round_trip(anthropic_sdk.Message, message)
    (block,) = message["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("label", {"sentiment": "positive"})
    assert message["stop_reason"] == "tool_use"


def test_a_tool_use_cut_by_max_tokens_is_text_with_stop_reason_max_tokens() -> None:
    body = anthropic_body(tools=[ANTHROPIC_TOOL], tool_choice={"type": "any"})
    message = MESSAGES.to_response(body, [generation('{"sentim', "length")])
    assert message["content"] == [{"type": "text", "text": '{"sentim'}]
    assert message["stop_reason"] == "max_tokens"


def test_a_forced_anthropic_tool_streams_input_json_deltas() -> None:
    body = anthropic_body(tools=[ANTHROPIC_TOOL], tool_choice={"type": "any"}, stream=True)
    events = asyncio.run(_events(MESSAGES, body, [*STREAM, generation(ARGUMENTS)]))
    start, deltas, final = events[1], events[2:4], events[5]
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["name"] == "label"
    assert_round_trip(anthropic_sdk.RawContentBlockStartEvent, start)
    for delta in deltas:
        assert_round_trip(anthropic_sdk.RawContentBlockDeltaEvent, delta)
    assert "".join(d["delta"]["partial_json"] for d in deltas) == ARGUMENTS
    assert final["delta"]["stop_reason"] == "tool_use"


def test_tool_choice_none_answers_in_text() -> None:
    body = anthropic_body(tools=[ANTHROPIC_TOOL], tool_choice={"type": "none"})
    (request,) = MESSAGES.to_generations(body, "r1")
    assert request.sampling.json_output is None and request.tools_json is None


def test_output_config_format_is_the_engine_schema_and_effort_is_ignored() -> None:
    body = anthropic_body(
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": SCHEMA}}
    )
    (request,) = MESSAGES.to_generations(body, "r1")
    assert request.sampling.json_output is not None
    assert json.loads(request.sampling.json_output.schema_json or "") == SCHEMA
    message = MESSAGES.to_response(body, [generation(ARGUMENTS)])
    assert message["content"] == [{"type": "text", "text": ARGUMENTS}]
    assert message["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        (
            {"tools": [ANTHROPIC_TOOL], "stream": True},
            "stream",
            "stream: true cannot be combined with tool_choice 'auto'",
        ),
        (
            {
                "tools": [ANTHROPIC_TOOL, {**ANTHROPIC_TOOL, "name": "b"}],
                "tool_choice": {"type": "any"},
            },
            "tool_choice",
            "needs exactly one tool, not 2",
        ),
        (
            {"tools": [ANTHROPIC_TOOL], "tool_choice": {"type": "tool", "name": "x"}},
            "tool_choice.name",
            "must name one of the tools (label)",
        ),
        (
            {
                "tools": [ANTHROPIC_TOOL],
                "tool_choice": {"type": "any"},
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            },
            "tool_choice",
            "cannot be combined",
        ),
        (
            {"tools": [{**ANTHROPIC_TOOL, "input_schema": {"type": "string"}}]},
            "tools.0.input_schema",
            "of type 'object'",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": 1}}}},
            "output_config.format.schema",
            "not a valid JSON Schema",
        ),
        ({"output_config": {"effort": "huge"}}, "output_config.effort", "'low'"),
    ],
)
def test_bad_anthropic_tool_use_names_the_field(
    params: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(endpoints.BodyError) as excinfo:
        anthropic_body(**params)
    assert excinfo.value.param == param
    assert fragment in excinfo.value.message


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "label"}}],
    ids=["required", "named"],
)
def test_a_forced_openai_function_answers_tool_calls(choice: Any) -> None:
    body = chat_body(tools=[OPENAI_TOOL], tool_choice=choice, parallel_tool_calls=False)
    (request,) = CHAT.to_generations(body, "r1")
    assert request.sampling.json_output is not None
    assert json.loads(request.sampling.json_output.schema_json or "") == SCHEMA
    completion = CHAT.to_response(body, [generation(ARGUMENTS)])
    assert_round_trip(SDKChatCompletion, completion)
    (answer,) = completion["choices"]
    assert answer["finish_reason"] == "tool_calls" and answer["message"]["content"] is None
    (call,) = answer["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "label", "arguments": ARGUMENTS}


def test_a_forced_openai_function_streams_its_arguments() -> None:
    body = chat_body(tools=[OPENAI_TOOL], tool_choice="required", stream=True)
    *chunks, done = asyncio.run(_events(CHAT, body, [*STREAM, generation(ARGUMENTS)]))
    assert done == "[DONE]"
    for chunk in chunks:
        assert_round_trip(SDKChatCompletionChunk, chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "label"
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas if d.get("tool_calls")]
    assert "".join(pieces) == ARGUMENTS
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        (
            {"tools": [OPENAI_TOOL], "tool_choice": "auto", "stream": True},
            "stream",
            '"required" with one tool',
        ),
        (
            {"tools": [OPENAI_TOOL, OPENAI_TOOL], "tool_choice": "required"},
            "tool_choice",
            "needs exactly one tool, not 2",
        ),
        (
            {
                "tools": [OPENAI_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice.function.name",
            "must name one of the tools (label)",
        ),
        (
            {
                "tools": [OPENAI_TOOL],
                "tool_choice": "required",
                "response_format": {"type": "json_object"},
            },
            "tool_choice",
            "cannot be combined",
        ),
    ],
)
def test_bad_openai_tool_use_names_the_field(
    params: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(endpoints.BodyError) as excinfo:
        chat_body(**params)
    assert excinfo.value.param == param
    assert fragment in excinfo.value.message


@pytest.mark.parametrize("choice", [None, {"type": "auto"}], ids=["default", "auto"])
def test_auto_tool_choice_shows_every_tool_and_leaves_the_output_free(choice: Any) -> None:
    other = {**ANTHROPIC_TOOL, "name": "other"}
    params = {"tools": [ANTHROPIC_TOOL, other]}
    body = anthropic_body(**params, **({"tool_choice": choice} if choice else {}))
    (request,) = MESSAGES.to_generations(body, "r1")
    assert request.is_auto_tool_choice and request.sampling.json_output is None
    names = [t["function"]["name"] for t in json.loads(request.tools_json or "")]
    assert names == ["label", "other"]
    (chat_request,) = CHAT.to_generations(chat_body(tools=[OPENAI_TOOL]), "r1")
    assert chat_request.is_auto_tool_choice and chat_request.sampling.json_output is None


def test_calls_a_parser_found_become_tool_use_blocks_and_tool_calls() -> None:
    found = Generation(
        10,
        0,
        [Choice("Let me label it.", 9, "stop", tool_calls=[ToolCall("label", ARGUMENTS)])],
    )
    message = MESSAGES.to_response(anthropic_body(tools=[ANTHROPIC_TOOL]), [found])
    assert_round_trip(anthropic_sdk.Message, message)
    text, tool_use = message["content"]
    assert text == {"type": "text", "text": "Let me label it."}
    assert (tool_use["type"], tool_use["name"]) == ("tool_use", "label")
    assert tool_use["input"] == {"sentiment": "positive"}
    assert message["stop_reason"] == "tool_use"

    completion = CHAT.to_response(chat_body(tools=[OPENAI_TOOL]), [found])
    assert_round_trip(SDKChatCompletion, completion)
    (answer,) = completion["choices"]
    assert answer["finish_reason"] == "tool_calls"
    assert answer["message"]["content"] == "Let me label it."
    assert answer["message"]["tool_calls"][0]["function"] == {
        "name": "label",
        "arguments": ARGUMENTS,
    }


def test_auto_without_tool_calls_is_a_plain_answer() -> None:
    message = MESSAGES.to_response(anthropic_body(tools=[ANTHROPIC_TOOL]), [generation("Hi.")])
    assert message["content"] == [{"type": "text", "text": "Hi."}]
    assert message["stop_reason"] == "end_turn"


def test_an_engine_without_a_tool_call_parser_refuses_auto_naming_the_setting() -> None:
    (request,) = CHAT.to_generations(chat_body(tools=[OPENAI_TOOL]), "r1")
    with pytest.raises(RequestRejected) as excinfo:
        asyncio.run(EchoEngine().generate(request))
    assert "set `tool_call_parser`" in excinfo.value.message
    assert excinfo.value.status_code == 400
