"""Round-trips through the official SDKs' own types: the wire contract, checked strictly.

The SDKs' models accept unknown keys silently (as extras), so parsing alone would not
catch a misspelt or invented field: `assert_round_trip` also requires that nothing
parsed as an extra, anywhere in the object, and that the object serialises back to the
same JSON.

Every e2e test reads batch results through these types: `output_lines` for OpenAI
output and error files, `message_batch_results` for Anthropic Message Batch results.
"""

from __future__ import annotations

import array
import base64
import json
from typing import Any

import anthropic
import openai
from anthropic.types.messages import MessageBatchIndividualResponse
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from freight.protocol import openai_wire

# The SDK's type of a successful response body, by the body's `object` (an embeddings
# body, `list`, is decoded first: `decoded_embeddings`).
BODY_TYPES: dict[str, type[Any]] = {
    "chat.completion": ChatCompletion,
    "text_completion": Completion,
    "response": Response,
}


def _extras(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _extras(item, f"{path}[{i}]")
    return found


# Fields Freight adds to the SDKs' objects on purpose, documented as its own extensions
# (docs/guides/economics.md: a batch's `expected_completion_at`; docs/guides/
# priority-and-flex.md: a batch's `priority` and `at_risk`, and the `service_tier` of a
# text completion or a message answered to a request that named one). Any other field the
# SDK does not know is a bug.
FREIGHT_EXTENSIONS = frozenset(
    {".expected_completion_at", ".cache", ".priority", ".at_risk", ".service_tier"}
)


def assert_round_trip(
    sdk_type: type[Any], data: dict[str, Any], *, as_streamed: bool = False
) -> Any:
    """`data` parses as `sdk_type` with no unknown field and serialises back to itself.

    `as_streamed`: build it as the SDK builds streamed chunks (`construct`, no validation):
    OpenAI streams text completions as `Completion` objects whose `finish_reason` is null
    until the last chunk, which the validating parse would refuse.
    """
    parsed = sdk_type.construct(**data) if as_streamed else sdk_type.model_validate(data)
    unknown = [field for field in _extras(parsed) if field not in FREIGHT_EXTENSIONS]
    assert unknown == [], f"fields the SDK does not know: {unknown}"
    assert parsed.to_dict(mode="json") == data
    return parsed


def batch_lines(text: str) -> list[dict[str, Any]]:
    """The lines of an OpenAI batch output or error file, each read through the types.

    The `openai` SDK has no type for a whole line, so the line round-trips Freight's wire
    model of it; its response body round-trips the SDK's type for the endpoint (an
    error body: the SDK's `ErrorObject`).
    """
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert openai_wire.BatchRequestOutput.model_validate(line).model_dump() == line
        response = line["response"]
        if response is None:
            continue
        body = response["body"]
        if response["status_code"] >= 400:
            assert set(body) == {"error"}, body
            assert_round_trip(ErrorObject, body["error"])
        elif body["object"] == "list":
            assert_round_trip(CreateEmbeddingResponse, decoded_embeddings(body))
        else:
            assert_round_trip(BODY_TYPES[body["object"]], body)
    return lines


def floats(encoded: str) -> list[float]:
    """A base64 embedding (`encoding_format="base64"`) as the floats it encodes."""
    values = array.array("f")
    values.frombytes(base64.b64decode(encoded))
    return list(values)


def decoded_embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """An embeddings body as the SDK hands it over: base64 vectors decoded to floats
    first, since the SDK's type declares floats only."""
    data = [
        {**d, "embedding": floats(d["embedding"])} if isinstance(d["embedding"], str) else d
        for d in body["data"]
    ]
    return {**body, "data": data}


def output_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """A batch's output or error file downloaded with the SDK, read by `batch_lines`
    (no file: no lines)."""
    if file_id is None:
        return []
    return batch_lines(client.files.content(file_id).text)


def message_batch_results(
    client: anthropic.Anthropic, batch_id: str
) -> list[MessageBatchIndividualResponse]:
    """An ended Message Batch's results, each raw line round-tripped through the SDK's type."""
    batch = client.messages.batches.retrieve(batch_id)
    assert batch.results_url is not None, f"{batch_id} has no results yet"
    text = client.get(
        batch.results_url, cast_to=str, options={"headers": {"accept": "application/binary"}}
    )
    return [
        assert_round_trip(MessageBatchIndividualResponse, json.loads(line))
        for line in text.splitlines()
        if line.strip()
    ]
