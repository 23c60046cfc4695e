"""Structured outputs and forced tool use the way the current SDKs ask for them: the
official `openai` and `anthropic` SDKs, the real vLLM engine.

Real time: `messages.parse(output_format=Label)`, `chat.completions.parse(response_format=
Label)` and `responses.parse(text_format=Label)` each return a parsed `Label`; a forced
tool answers with a tool call whose arguments validate. Batches: the same request bodies
(built by the SDKs' own schema helpers) as batch lines and Message Batch params, and 100
forced tool calls per API, every output validated against its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pytest
from anthropic.lib._parse._transform import transform_schema
from openai.lib._parsing._completions import type_to_response_format_param
from openai.lib._parsing._responses import type_to_text_format_param
from openai.types.chat import ChatCompletion as SDKChatCompletion
from openai.types.responses import Response as SDKResponse
from pydantic import BaseModel

from tests.conftest import (
    CHAT_MODEL,
    TOOLS_MODEL,
    LiveServer,
    wait_for_batch,
    wait_for_message_batch,
    write_jsonl,
)
from tests.sdk import assert_round_trip, message_batch_results, output_lines

pytestmark = pytest.mark.slow

REVIEWS = [
    "The battery lasts all day and the screen is gorgeous.",
    "It broke after two days and support never answered.",
    "It arrived on time. It works.",
    "Best purchase of the year, I love it!",
    "Terrible sound, a waste of money.",
]
SYSTEM = "Label the sentiment of the customer review and rate it with 1 to 5 stars."


class Label(BaseModel):
    """What the labeling job asks for: constraints every SDK keeps in its schema."""

    sentiment: Literal["positive", "negative", "neutral"]
    stars: Literal[1, 2, 3, 4, 5]


LABEL_SCHEMA = Label.model_json_schema()
ANTHROPIC_TOOL = {
    "name": "record_label",
    "description": "Record the review's label.",
    "input_schema": LABEL_SCHEMA,
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "record_label",
        "description": "Record the review's label.",
        "parameters": {**LABEL_SCHEMA, "additionalProperties": False},
        "strict": True,
    },
}


def anthropic_params(review: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "max_tokens": 60,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": review}],
        **extra,
    }


def chat_body(review: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "max_tokens": 60,
        "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": review}],
        **extra,
    }


def run_message_batch(client: anthropic.Anthropic, requests: list[Any]) -> dict[str, Any]:
    """Run `requests` as a Message Batch; each result's message, round-tripped, by custom_id."""
    batch = wait_for_message_batch(client, client.messages.batches.create(requests=requests).id)
    assert batch.request_counts.succeeded == len(requests), batch.request_counts
    results = message_batch_results(client, batch.id)
    assert sorted(r.custom_id for r in results) == sorted(r["custom_id"] for r in requests)
    return {r.custom_id: r.to_dict(mode="json")["result"]["message"] for r in results}


def openai_batch_results(
    client: openai.OpenAI, tmp_path: Path, url: str, bodies: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Run `bodies` as an OpenAI batch on `url`; each response body, round-tripped."""
    lines = [
        {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
        for custom_id, body in bodies.items()
    ]
    uploaded = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=url, completion_window="24h")  # type: ignore[arg-type]
    batch = wait_for_batch(client, batch.id)
    assert batch.status == "completed" and batch.output_file_id is not None, batch.errors
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(lines), 0)
    results = output_lines(client, batch.output_file_id)
    assert sorted(r["custom_id"] for r in results) == sorted(bodies)
    return {r["custom_id"]: r["response"]["body"] for r in results}


# --- structured outputs: the SDKs' parse helpers ---------------------------------------------


def test_anthropic_messages_parse_returns_the_pydantic_model(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    parsed = client.messages.parse(
        **anthropic_params(REVIEWS[0]),
        output_format=Label,
        output_config={"effort": "low"},  # accepted and ignored
        extra_body={"temperature": 0},
    )
    assert isinstance(parsed.parsed_output, Label)
    assert parsed.stop_reason == "end_turn"

    # The same request streamed: the text deltas add up to the same JSON.
    body = anthropic_params(
        REVIEWS[0],
        stream=True,
        output_config={"format": {"type": "json_schema", "schema": transform_schema(Label)}},
    )
    events = list(client.messages.create(**body, extra_body={"temperature": 0}))
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert Label.model_validate_json(text) == parsed.parsed_output


def test_openai_parse_helpers_return_the_pydantic_model(real_server: LiveServer) -> None:
    client = real_server.openai()
    chat = client.chat.completions.parse(**chat_body(REVIEWS[1]), response_format=Label)
    assert isinstance(chat.choices[0].message.parsed, Label)
    response = client.responses.parse(
        model=CHAT_MODEL,
        instructions=SYSTEM,
        input=REVIEWS[1],
        max_output_tokens=60,
        temperature=0,
        text_format=Label,
    )
    assert isinstance(response.output_parsed, Label)


def test_the_parse_request_bodies_as_batches_validate_every_line(
    real_server: LiveServer, tmp_path: Path
) -> None:
    """The bodies the three parse helpers send, as batch lines and Message Batch params."""
    anthropic_format = {"format": {"type": "json_schema", "schema": transform_schema(Label)}}
    messages = run_message_batch(
        real_server.anthropic(),
        [
            {
                "custom_id": f"r{i}",
                "params": anthropic_params(review, temperature=0, output_config=anthropic_format),
            }
            for i, review in enumerate(REVIEWS)
        ],
    )
    for message in messages.values():
        assert message["stop_reason"] == "end_turn"
        jsonschema.validate(json.loads(message["content"][0]["text"]), LABEL_SCHEMA)

    client = real_server.openai()
    chat = openai_batch_results(
        client,
        tmp_path,
        "/v1/chat/completions",
        {
            f"r{i}": chat_body(review, response_format=type_to_response_format_param(Label))
            for i, review in enumerate(REVIEWS)
        },
    )
    for body in chat.values():
        assert_round_trip(SDKChatCompletion, body)
        Label.model_validate_json(body["choices"][0]["message"]["content"])

    (tmp_path / "responses").mkdir()
    responses = openai_batch_results(
        client,
        tmp_path / "responses",
        "/v1/responses",
        {
            f"r{i}": {
                "model": CHAT_MODEL,
                "instructions": SYSTEM,
                "input": review,
                "max_output_tokens": 60,
                "temperature": 0,
                "text": {"format": type_to_text_format_param(Label)},
            }
            for i, review in enumerate(REVIEWS)
        },
    )
    for body in responses.values():
        Label.model_validate_json(SDKResponse.model_validate(body).output_text)


# --- forced tool use ----------------------------------------------------------------------------


def test_forced_anthropic_tool_use_in_real_time(real_server: LiveServer) -> None:
    client = real_server.anthropic()
    for choice in ({"type": "tool", "name": "record_label"}, {"type": "any"}):
        message = client.messages.create(
            **anthropic_params(REVIEWS[3]),
            tools=[ANTHROPIC_TOOL],
            tool_choice=choice,
            extra_body={"temperature": 0},
        )
        (block,) = message.content
        assert block.type == "tool_use" and block.name == "record_label"
        assert message.stop_reason == "tool_use"
        jsonschema.validate(block.input, LABEL_SCHEMA)

    with client.messages.stream(
        **anthropic_params(REVIEWS[3]),
        tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and final.stop_reason == "tool_use"
    jsonschema.validate(block.input, LABEL_SCHEMA)

    # `auto` (the default) needs a tool-call parser, which this model has none of.
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.create(**anthropic_params(REVIEWS[3]), tools=[ANTHROPIC_TOOL])
    assert "set `tool_call_parser`" in excinfo.value.message


def test_forced_openai_tool_call_in_real_time(real_server: LiveServer) -> None:
    client = real_server.openai()
    named = {"type": "function", "function": {"name": "record_label"}}
    for choice in ("required", named):
        completion = client.chat.completions.create(
            **chat_body(REVIEWS[4]), tools=[OPENAI_TOOL], tool_choice=choice
        )
        (answer,) = completion.choices
        assert answer.finish_reason == "tool_calls" and answer.message.tool_calls
        (call,) = answer.message.tool_calls
        assert call.function.name == "record_label"  # type: ignore[union-attr]
        jsonschema.validate(json.loads(call.function.arguments), LABEL_SCHEMA)  # type: ignore[union-attr]

    chunks = list(
        client.chat.completions.create(
            **chat_body(REVIEWS[4]), tools=[OPENAI_TOOL], tool_choice="required", stream=True
        )
    )
    pieces = [
        c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[union-attr]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    jsonschema.validate(json.loads("".join(pieces)), LABEL_SCHEMA)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The SDK's helper parses a strict function tool's arguments into its model.
    parsed = client.chat.completions.parse(
        **chat_body(REVIEWS[4]),
        tools=[openai.pydantic_function_tool(Label)],
        tool_choice="required",
    )
    (call,) = parsed.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, Label)

    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(**chat_body(REVIEWS[4]), tools=[OPENAI_TOOL])
    assert "set `tool_call_parser`" in excinfo.value.message


def test_a_batch_of_100_forced_tool_calls_validates_on_both_apis(
    real_server: LiveServer, tmp_path: Path
) -> None:
    reviews = [f"Review {i}: {REVIEWS[i % len(REVIEWS)]}" for i in range(100)]
    messages = run_message_batch(
        real_server.anthropic(),
        [
            {
                "custom_id": f"r{i:03d}",
                "params": anthropic_params(
                    review, temperature=0, tools=[ANTHROPIC_TOOL], tool_choice={"type": "any"}
                ),
            }
            for i, review in enumerate(reviews)
        ],
    )
    assert len(messages) == 100
    for message in messages.values():
        (block,) = message["content"]
        assert block["type"] == "tool_use" and message["stop_reason"] == "tool_use"
        jsonschema.validate(block["input"], LABEL_SCHEMA)

    chat = openai_batch_results(
        real_server.openai(),
        tmp_path,
        "/v1/chat/completions",
        {
            f"r{i:03d}": chat_body(review, tools=[OPENAI_TOOL], tool_choice="required")
            for i, review in enumerate(reviews)
        },
    )
    assert len(chat) == 100
    for body in chat.values():
        assert_round_trip(SDKChatCompletion, body)
        (answer,) = body["choices"]
        assert answer["finish_reason"] == "tool_calls"
        (call,) = answer["message"]["tool_calls"]
        jsonschema.validate(json.loads(call["function"]["arguments"]), LABEL_SCHEMA)


# --- auto tool choice with a tool-call parser (the session's two-engine server, conftest) ----

HERMES_CALL = (
    '<tool_call>{"name": "record_label", "arguments": {"sentiment": "positive", "stars": 5}}'
    "</tool_call>"
)


def test_auto_tool_choice_with_a_parser_returns_the_calls_the_model_made(
    two_engine_server: LiveServer,
) -> None:
    """The model is asked to copy a call in the hermes format; whatever it writes, the
    answer is a valid message, and a call it made is a tool_use / tool_calls entry."""
    prompt = f"Copy this line exactly, nothing else:\n{HERMES_CALL}"
    message = two_engine_server.anthropic().messages.create(
        model=TOOLS_MODEL,
        max_tokens=120,
        messages=[{"role": "user", "content": prompt}],
        tools=[ANTHROPIC_TOOL],
        extra_body={"temperature": 0},
    )
    calls = [block for block in message.content if block.type == "tool_use"]
    if calls:
        assert message.stop_reason == "tool_use"
        assert all(c.name == "record_label" for c in calls)
        assert "<tool_call>" not in "".join(b.text for b in message.content if b.type == "text")
    else:
        assert message.stop_reason in ("end_turn", "max_tokens")

    completion = two_engine_server.openai().chat.completions.create(
        model=TOOLS_MODEL,
        max_tokens=120,
        temperature=0,
        messages=[{"role": "user", "content": prompt}],
        tools=[OPENAI_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    (answer,) = completion.choices
    openai_calls = answer.message.tool_calls or []
    assert answer.finish_reason in (("tool_calls",) if openai_calls else ("stop", "length"))
    assert len(openai_calls) == len(calls)  # greedy: the same output through both APIs
