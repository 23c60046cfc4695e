"""The Responses API and structured-output formats, translated without an engine.

Every object and stream event built here is parsed by the openai SDK's own types: what
Freight sends must be what the SDK reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from freight.engines.base import Choice, Delta, EngineDied, Generation, JsonOutput, Message
from freight.protocol import endpoints, responses_api

RESPONSES = endpoints.ENDPOINTS["/v1/responses"]
CHAT = endpoints.ENDPOINTS["/v1/chat/completions"]
SCHEMA = {
    "type": "object",
    "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
    "required": ["b", "a"],
}
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


def parse_response(**body: Any) -> responses_api.CreateResponse:
    parsed = endpoints.parse_body(RESPONSES, {"model": "m", **body}, in_batch=False)
    assert isinstance(parsed, responses_api.CreateResponse)
    return parsed


def body_error(endpoint: Any, body: dict[str, Any]) -> endpoints.BodyError:
    with pytest.raises(endpoints.BodyError) as excinfo:
        endpoints.parse_body(endpoint, body, in_batch=True)
    return excinfo.value


def test_instructions_and_input_become_one_conversation() -> None:
    body = parse_response(
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Hi "},
                    {"type": "input_text", "text": "there"},
                ],
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        max_output_tokens=7,
        temperature=0,
    )
    (work,) = RESPONSES.to_generations(body, "r1")  # type: ignore[union-attr]
    assert work.messages == (
        Message("system", "Be brief."),
        Message("system", "Answer in French."),
        Message("user", "Hi there"),
        Message("assistant", "Bonjour"),
        Message("user", "Thanks"),
    )
    assert (work.sampling.max_tokens, work.sampling.temperature) == (7, 0)
    assert work.sampling.json_output is None


def test_a_string_input_is_one_user_message() -> None:
    (work,) = RESPONSES.to_generations(parse_response(input="Hello"), "r1")  # type: ignore[union-attr]
    assert work.messages == (Message("user", "Hello"),)


def test_text_format_json_schema_keeps_the_schema_and_its_key_order() -> None:
    fmt = {"type": "json_schema", "name": "pair", "schema": SCHEMA, "strict": True}
    (work,) = RESPONSES.to_generations(  # type: ignore[union-attr]
        parse_response(input="x", text={"format": fmt}), "r1"
    )
    assert work.sampling.json_output == JsonOutput(json.dumps(SCHEMA, separators=(",", ":")))
    assert list(json.loads(work.sampling.json_output.schema_json or "")["properties"]) == ["b", "a"]
    (plain,) = RESPONSES.to_generations(  # type: ignore[union-attr]
        parse_response(input="x", text={"format": {"type": "json_object"}}), "r1"
    )
    assert plain.sampling.json_output == JsonOutput(None)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, JsonOutput(None)),
        (
            {"type": "json_schema", "json_schema": {"name": "pair", "schema": SCHEMA}},
            JsonOutput(json.dumps(SCHEMA, separators=(",", ":"))),
        ),
    ],
)
def test_chat_response_format_becomes_the_sampling_constraint(
    fmt: dict[str, Any], expected: JsonOutput | None
) -> None:
    body = endpoints.parse_body(
        CHAT,
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": fmt},
        in_batch=True,
    )
    (work,) = CHAT.to_generations(body, "c1")  # type: ignore[union-attr]
    assert work.sampling.json_output == expected


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "strin"}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON Schema (at type:",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"properties": []}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON Schema (at properties:",
        ),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format",
            "needs `json_schema`",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "bad name!", "schema": {}},
                }
            },
            "response_format.json_schema.name",
            "should match pattern",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "'json_schema'"),
    ],
)
def test_bad_chat_response_format_is_a_400_naming_the_field(
    body: dict[str, Any], param: str, says: str
) -> None:
    error = body_error(CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}], **body})
    assert error.param == param
    assert says in error.message


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}},
            "text.format.schema",
            "not a valid JSON Schema",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format",
            "needs `name` and `schema`",
        ),
        ({"text": {"format": {"type": "text", "schema": {}}}}, "text.format", "belong only to"),
        ({"tools": [{"type": "web_search"}]}, "tools", "Unrecognized request argument"),
        ({"previous_response_id": "resp_1"}, "previous_response_id", "Unrecognized"),
        ({"input": []}, "input", "at least 1 item"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0.type",
            "'input_text' or 'output_text'",
        ),
        ({"stream": True}, "stream", "not supported in batch"),
        ({"max_output_tokens": 0}, "max_output_tokens", "greater than or equal to 1"),
    ],
)
def test_bad_responses_body_is_a_400_naming_the_field(
    body: dict[str, Any], param: str, says: str
) -> None:
    error = body_error(RESPONSES, {"model": "m", "input": "x", **body})
    assert error.param == param
    assert says in error.message


def generation(text: str, finish: Any = "stop") -> Generation:
    return Generation(num_prompt_tokens=11, num_cached_tokens=3, choices=[Choice(text, 4, finish)])


def test_response_object_round_trips_through_the_sdk_type() -> None:
    fmt = {"type": "json_schema", "name": "pair", "schema": SCHEMA, "strict": True}
    body = parse_response(
        input="x", instructions="Be brief.", text={"format": fmt}, metadata={"job": "j"}
    )
    obj = RESPONSES.to_response(body, [generation('{"b":"x","a":1}')])
    parsed = SDKResponse.model_validate(obj)
    assert parsed.to_dict() == obj
    assert parsed.output_text == '{"b":"x","a":1}'
    assert parsed.id.startswith("resp_") and parsed.output[0].id.startswith("msg_")
    assert (parsed.status, parsed.incomplete_details) == ("completed", None)
    assert parsed.text is not None and parsed.text.to_dict()["format"] == fmt
    assert parsed.usage is not None and parsed.usage.to_dict() == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    assert (parsed.instructions, parsed.metadata) == ("Be brief.", {"job": "j"})


def test_output_cut_at_max_output_tokens_is_incomplete() -> None:
    body = parse_response(input="x", max_output_tokens=4)
    obj = RESPONSES.to_response(body, [generation("a b c d", "length")])
    parsed = SDKResponse.model_validate(obj)
    assert parsed.status == "incomplete" and parsed.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert parsed.incomplete_details is not None
    assert parsed.incomplete_details.reason == "max_output_tokens"


def stream_events(finish: Any = "stop") -> list[dict[str, Any]]:
    events = responses_api.StreamEvents(parse_response(input="x"), "resp_abc")
    out = list(events.start())
    out += [events.delta(piece) for piece in ("Hel", "lo", "!")]
    out += list(events.finish(generation("Hello!", finish)))
    return out


def test_stream_events_come_in_the_order_the_sdk_expects() -> None:
    events = stream_events()
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        assert STREAM_EVENT.validate_python(event).to_dict() == event
    final = SDKResponse.model_validate(events[-1]["response"])
    assert final.id == "resp_abc" and final.output_text == "Hello!"
    assert events[0]["response"]["status"] == "in_progress"
    assert events[-4]["text"] == "Hello!"
    item_ids = {e["item_id"] for e in events if "item_id" in e}
    assert item_ids == {final.output[0].id}


def test_a_stream_cut_by_max_output_tokens_ends_incomplete() -> None:
    events = stream_events("length")
    assert events[-1]["type"] == "response.incomplete"
    assert STREAM_EVENT.validate_python(events[-1]).response.status == "incomplete"  # type: ignore[union-attr]


def test_a_broken_stream_ends_with_response_failed() -> None:
    events = responses_api.StreamEvents(parse_response(input="x"), "resp_abc")
    list(events.start())
    failed = events.fail("the engine died")
    parsed = STREAM_EVENT.validate_python(failed)
    assert parsed.type == "response.failed"
    assert parsed.response.error is not None  # type: ignore[union-attr]
    assert parsed.response.error.message == "the engine died"  # type: ignore[union-attr]


def test_to_stream_ends_a_stream_the_engine_broke_with_response_failed() -> None:
    async def engine_events() -> AsyncIterator[tuple[int, Delta | Generation]]:
        yield 0, Delta(0, "Hel", None, 5, 0)
        raise EngineDied("the engine died")

    async def collect() -> list[Any]:
        body = parse_response(input="x", stream=True)
        return [e async for e in responses_api.to_stream(body, engine_events())]

    events = asyncio.run(collect())
    assert [e.event for e in events] == [e.data["type"] for e in events]
    assert [e.event for e in events][-2:] == ["response.output_text.delta", "response.failed"]
    assert [e.data["sequence_number"] for e in events] == list(range(len(events)))
    failed = STREAM_EVENT.validate_python(events[-1].data)
    assert failed.response.error.message == "the engine died"  # type: ignore[union-attr]
