"""/v1/responses and structured outputs end to end: the official SDK, the real vLLM engine.

Real time (JSON and SSE) and batches; every output is parsed by the SDK's own types,
and every structured output parses as JSON and validates against its schema, for
`text.format` on responses and `response_format` on chat completions alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletion as SDKChatCompletion
from openai.types.responses import Response as SDKResponse
from pydantic import BaseModel, Field

from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    wait_for_batch,
    write_jsonl,
)
from tests.sdk import output_lines

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABELS = [json.loads(x) for x in (EXAMPLES / "label-reviews.jsonl").read_text().splitlines()]
LABEL_FORMAT = LABELS[0]["body"]["response_format"]
LABEL_SCHEMA = LABEL_FORMAT["json_schema"]["schema"]
PAIR_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome", "Madrid"]},
        "country": {"type": "string", "maxLength": 20},
    },
    "required": ["city", "country"],
    "additionalProperties": False,
}
QUESTION = "Name the capital of France and its country."
PAIR_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "capital", "schema": PAIR_SCHEMA, "strict": True},
}


class Capital(BaseModel):
    """PAIR_SCHEMA as a pydantic model, for the SDK's `chat.completions.parse`."""

    city: Literal["Paris", "Rome", "Madrid"]
    country: str = Field(max_length=20)


def run_batch(client: Any, tmp_path: Path, endpoint: str, lines: list[dict[str, Any]]) -> Any:
    uploaded = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id)
    assert batch.status == "completed", batch.errors
    results = output_lines(client, batch.output_file_id) + output_lines(client, batch.error_file_id)
    assert sorted(r["custom_id"] for r in results) == sorted(x["custom_id"] for x in lines)
    return batch, {r["custom_id"]: r for r in results}


def response_line(custom_id: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": CHAT_MODEL, **body},
    }


def test_responses_create_returns_the_sdk_response(real_server: LiveServer) -> None:
    client = real_server.openai()
    response = client.responses.create(
        model=CHAT_MODEL,
        instructions="You are a geography teacher. Answer in one short sentence.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
        max_output_tokens=40,
        temperature=0,
        metadata={"case": "plain"},
    )
    assert isinstance(response, SDKResponse)
    assert response.id.startswith("resp_") and response.model == CHAT_MODEL
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage is not None
    assert 0 < response.usage.output_tokens <= 40 and response.usage.input_tokens > 10
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions and response.metadata == {"case": "plain"}
    assert SDKResponse.model_validate(response.to_dict()).to_dict() == response.to_dict()


def test_streamed_response_events_add_up_to_the_non_streamed_response(
    real_server: LiveServer,
) -> None:
    client = real_server.openai()
    params: dict[str, Any] = {
        "model": CHAT_MODEL,
        "input": QUESTION,
        "max_output_tokens": 30,
        "temperature": 0,
    }
    plain = client.responses.create(**params)
    events = list(client.responses.create(**params, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] == (
        "response.completed" if plain.status == "completed" else "response.incomplete"
    )
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    text = "".join(d.delta for d in deltas)  # type: ignore[union-attr]
    # fp32 engine, temperature 0: streaming changes delivery, not the text
    assert text == final.output_text == plain.output_text
    assert final.usage is not None and plain.usage is not None
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_the_sdk_stream_helper_assembles_the_final_response(real_server: LiveServer) -> None:
    # The helper's get_final_response() needs `response.completed`: a reply that ends on
    # its own (a response cut by max_output_tokens ends `response.incomplete`, as upstream).
    client = real_server.openai()
    with client.responses.stream(
        model=CHAT_MODEL, input="Say hello.", max_output_tokens=60, temperature=0
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert text and final.output_text == text
    assert final.usage is not None and 0 < final.usage.output_tokens < 60


def test_max_output_tokens_ends_an_incomplete_response(real_server: LiveServer) -> None:
    client = real_server.openai()
    response = client.responses.create(
        model=CHAT_MODEL, input="Tell me a long story.", max_output_tokens=5, temperature=0
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 5


def test_responses_text_format_json_schema_output_validates(real_server: LiveServer) -> None:
    client = real_server.openai()
    response = client.responses.create(
        model=CHAT_MODEL,
        input=QUESTION,
        text={
            "format": {
                "type": "json_schema",
                "name": "capital",
                "schema": PAIR_SCHEMA,
                "strict": True,
            }
        },
        max_output_tokens=60,
        temperature=0,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), PAIR_SCHEMA)
    assert response.text is not None and response.text.format.type == "json_schema"  # type: ignore[union-attr]
    streamed = list(
        client.responses.create(
            model=CHAT_MODEL,
            input=QUESTION,
            text={"format": {"type": "json_schema", "name": "capital", "schema": PAIR_SCHEMA}},
            max_output_tokens=60,
            temperature=0,
            stream=True,
        )
    )
    final = streamed[-1].response  # type: ignore[union-attr]
    jsonschema.validate(json.loads(final.output_text), PAIR_SCHEMA)


def test_invalid_schema_is_a_400_in_real_time(real_server: LiveServer) -> None:
    client = real_server.openai()
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.responses.create(
            model=CHAT_MODEL,
            input=QUESTION,
            text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "strin"}}},
        )
    assert excinfo.value.param == "text.format.schema"
    assert "not a valid JSON Schema" in excinfo.value.message
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.responses.create(
            model=CHAT_MODEL,
            input=QUESTION,
            stream=True,
            text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "strin"}}},
        )
    assert excinfo.value.param == "text.format.schema"


def test_chat_response_format_json_schema_in_real_time(real_server: LiveServer) -> None:
    client = real_server.openai()
    messages: Any = [{"role": "user", "content": QUESTION}]
    params: dict[str, Any] = {"model": CHAT_MODEL, "messages": messages, "temperature": 0}
    completion = client.chat.completions.create(
        **params, response_format=PAIR_FORMAT, max_tokens=60
    )
    assert SDKChatCompletion.model_validate(completion.to_dict()).to_dict() == completion.to_dict()
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content is not None
    jsonschema.validate(json.loads(choice.message.content), PAIR_SCHEMA)

    chunks = list(
        client.chat.completions.create(
            **params, response_format=PAIR_FORMAT, max_tokens=60, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # fp32 engine, temperature 0: streaming changes delivery, not the text
    assert streamed == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    # The SDK's own helper: a pydantic model as the schema (strict), parsed back into it.
    parsed = client.chat.completions.parse(**params, response_format=Capital, max_tokens=60)
    capital = parsed.choices[0].message.parsed
    assert isinstance(capital, Capital)
    jsonschema.validate(capital.model_dump(), PAIR_SCHEMA)


def test_invalid_chat_response_format_is_a_400_before_any_stream(real_server: LiveServer) -> None:
    client = real_server.openai()
    bad_format: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 1}}}
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as excinfo:
            client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": QUESTION}],
                response_format=bad_format,
                stream=stream,
            )
        assert excinfo.value.param == "response_format.json_schema.schema"
        assert "not a valid JSON Schema" in excinfo.value.message


def test_chat_structured_outputs_batch_parses_and_validates(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    schema_format = {
        "type": "json_schema",
        "json_schema": {"name": "capital", "schema": PAIR_SCHEMA, "strict": True},
    }
    lines = [
        chat_line(
            f"schema-{i}",
            question,
            max_tokens=60,
            temperature=0,
            response_format=schema_format,
        )
        for i, question in enumerate(
            [QUESTION, "Which city is the capital of Italy?", "Capital of Spain, please."]
        )
    ]
    lines.append(
        chat_line(
            "object",
            'Reply with the JSON object {"answer": "yes"}.',
            max_tokens=40,
            temperature=0,
            response_format={"type": "json_object"},
        )
    )
    lines.append(
        chat_line(
            "bad-schema",
            QUESTION,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": 1}},
            },
        )
    )
    batch, results = run_batch(client, tmp_path, "/v1/chat/completions", lines)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (4, 1)
    for custom_id, result in results.items():
        if custom_id == "bad-schema":
            error = result["response"]["body"]["error"]
            assert result["response"]["status_code"] == 400
            assert error["param"] == "response_format.json_schema.schema"
            continue
        body = result["response"]["body"]
        assert SDKChatCompletion.model_validate(body).to_dict() == body
        choice = body["choices"][0]
        assert choice["finish_reason"] == "stop"
        content = json.loads(choice["message"]["content"])
        if custom_id == "object":
            assert isinstance(content, dict)
        else:
            jsonschema.validate(content, PAIR_SCHEMA)


def test_responses_batch_round_trips_the_sdk_types(real_server: LiveServer, tmp_path: Path) -> None:
    client = real_server.openai()
    lines = [
        response_line("plain", input=QUESTION, max_output_tokens=20, temperature=0),
        response_line(
            "messages",
            instructions="Answer in one word.",
            input=[{"role": "user", "content": "What color is the sky?"}],
            max_output_tokens=10,
            temperature=0,
        ),
        response_line(
            "schema",
            input=QUESTION,
            text={"format": {"type": "json_schema", "name": "capital", "schema": PAIR_SCHEMA}},
            max_output_tokens=60,
            temperature=0,
        ),
        response_line("streamed", input=QUESTION, stream=True),
    ]
    batch, results = run_batch(client, tmp_path, "/v1/responses", lines)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 1)
    assert results["streamed"]["response"]["status_code"] == 400
    assert results["streamed"]["response"]["body"]["error"]["param"] == "stream"
    for custom_id in ("plain", "messages", "schema"):
        body = results[custom_id]["response"]["body"]
        parsed = SDKResponse.model_validate(body)
        assert parsed.to_dict() == body
        assert parsed.object == "response" and parsed.output_text
    jsonschema.validate(
        json.loads(SDKResponse.model_validate(results["schema"]["response"]["body"]).output_text),
        PAIR_SCHEMA,
    )
    usage = [results[k]["response"]["body"]["usage"] for k in ("plain", "messages", "schema")]
    assert batch.usage is not None
    assert batch.usage.output_tokens == sum(u["output_tokens"] for u in usage)
    assert batch.usage.input_tokens == sum(u["input_tokens"] for u in usage)


def test_a_200_request_labeling_batch_validates_against_its_schema(
    real_server: LiveServer, tmp_path: Path
) -> None:
    """The examples/label-reviews.jsonl job, 200 lines: every output is valid JSON of the schema."""
    client = real_server.openai()
    lines = []
    for i in range(200):
        line = json.loads(json.dumps(LABELS[i % len(LABELS)]))
        line["custom_id"] = f"label-{i:03d}"
        if i >= len(LABELS):  # the same reviews again, worded as a new request
            line["body"]["messages"][-1]["content"] = (
                f"Review #{i}: " + line["body"]["messages"][-1]["content"]
            )
        lines.append(line)
    batch, results = run_batch(client, tmp_path, "/v1/chat/completions", lines)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (200, 0)
    labels = []
    for result in results.values():
        body = result["response"]["body"]
        assert SDKChatCompletion.model_validate(body).to_dict() == body
        choice = body["choices"][0]
        assert choice["finish_reason"] == "stop"
        label = json.loads(choice["message"]["content"])
        jsonschema.validate(label, LABEL_SCHEMA)
        labels.append(label)
    assert len(labels) == 200
