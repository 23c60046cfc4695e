"""Structured outputs on the wire: `response_format` (chat) and `text.format` (responses).

Both ask for plain text (`text`), any JSON object (`json_object`), or JSON matching a
schema (`json_schema`). The schema is checked against the JSON Schema meta-schema when
the body is parsed, so an invalid one is a 400 that names the problem (in a batch, that
line's error) before any engine sees it; the engine then enforces the schema while
decoding (vLLM's guided decoding).

Each format is one model with a `type` rather than a tagged union, so a validation error
points at the field as the client wrote it (`text.format.schema`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from freight.engines.base import JsonOutput
from freight.protocol.request_model import RequestModel

FormatType = Literal["text", "json_object", "json_schema"]


class _Strict(RequestModel):
    model_config = ConfigDict(populate_by_name=True)


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise a pydantic error naming the problem if `schema` is not a valid JSON Schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        message = f"not a valid JSON Schema (at {where}: {exc.message})"
        raise PydanticCustomError("invalid_json_schema", message) from None
    return schema


class JsonSchemaFields(_Strict):
    """A named JSON schema: `response_format.json_schema`, or the fields of `text.format`."""

    name: str = Field(
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="a-z, A-Z, 0-9, `_` and `-`, at most 64 characters.",
    )
    description: str | None = Field(None, description="What the format is for.")
    # `schema` would shadow a BaseModel attribute; it is the wire name all the same.
    json_schema: dict[str, Any] = Field(alias="schema", description="A JSON Schema object.")
    strict: bool | None = Field(
        None, description="Accepted for compatibility: the schema is always enforced."
    )

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_schema(value)


class ResponseFormat(_Strict):
    """Chat completions' `response_format`."""

    type: FormatType
    json_schema: JsonSchemaFields | None = Field(None, description="For `json_schema` only.")

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise PydanticCustomError(
                "invalid_response_format",
                "response_format needs `json_schema` ({name, schema}) exactly when its "
                "type is 'json_schema'",
            )
        return self

    def to_json_output(self) -> JsonOutput | None:
        schema = self.json_schema.json_schema if self.json_schema is not None else None
        return _json_output(self.type, schema)


class TextFormat(_Strict):
    """The Responses API's `text.format`: the schema fields sit beside `type`."""

    type: FormatType
    name: str | None = Field(None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_schema(value)

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> TextFormat:
        has_schema = self.name is not None and self.json_schema is not None
        if self.type == "json_schema" and not has_schema:
            raise PydanticCustomError(
                "invalid_text_format",
                "text.format of type 'json_schema' needs `name` and `schema`",
            )
        extras = (self.name, self.description, self.json_schema, self.strict)
        if self.type != "json_schema" and any(x is not None for x in extras):
            raise PydanticCustomError(
                "invalid_text_format",
                "`name`, `description`, `schema` and `strict` belong only to type 'json_schema'",
            )
        return self

    def to_json_output(self) -> JsonOutput | None:
        return _json_output(self.type, self.json_schema)


def _json_output(kind: FormatType, schema: dict[str, Any] | None) -> JsonOutput | None:
    if kind == "text":
        return None
    if kind == "json_object" or schema is None:
        return JsonOutput()
    # Key order kept: the engine emits properties in the order the schema lists them.
    return JsonOutput(json.dumps(schema, separators=(",", ":")))
