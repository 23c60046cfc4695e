"""Freight's OpenAPI document: FastAPI's, completed with what the routes really answer.

FastAPI documents a 422 `{"detail": ...}` for validation failures, which Freight never
sends (api/errors.py answers 400 in the API's own error shape), and knows nothing of the
routes that read their bodies as streams. This fills in, for every operation: the error
responses in OpenAI's or Anthropic's shape, the multipart upload and the streamed Message
Batch body, the media types of downloads and streams, and the values the webhook inputs
accept. The fuzz tests (tests/fuzz/test_openapi.py) hold every response to this
document, and generate requests from it: the stricter it is, the deeper they reach.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from freight.api.errors import is_anthropic_path
from freight.protocol import anthropic_wire, webhook_wire
from freight.store import files
from freight.store.webhook_store import EVENT_TYPES

ERROR_STATUSES = {
    "400": "The request is invalid: the message names what, where, and what is accepted.",
    "401": "A missing, wrong, revoked or expired API key (once any key exists).",
    "404": "No such object, route or model.",
    "409": "The object is not in a state that allows this.",
    "413": "The body or file is larger than its limit.",
    "429": "Over one of the project's quotas; Retry-After says when to try again.",
    "503": "Storage or the engine is unavailable for now; try again shortly.",
}
_DOWNLOADS = {
    "/v1/files/{file_id}/content": "application/octet-stream",
    "/v1/messages/batches/{message_batch_id}/results": "application/x-jsonl",
}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error shape, on every /v1 route except /v1/messages..."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error shape, on /v1/messages and /v1/messages/batches."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = None


class FileUpload(BaseModel):
    """POST /v1/files: a multipart form (streamed to storage within the size limit)."""

    file: bytes = Field(description="The file (JSONL for purpose 'batch').")
    purpose: Literal[files.UPLOAD_PURPOSES] = Field(  # type: ignore[valid-type]
        description="What the file is for."
    )


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            complete(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(defs.pop("$defs", {}))
    schemas[model.__name__] = defs
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def complete(schema: dict[str, Any]) -> None:
    """Add error responses, stream bodies and media types to FastAPI's document."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    openai_error, anthropic_error = _ref(OpenAIError, schemas), _ref(AnthropicError, schemas)
    upload = _ref(FileUpload, schemas)
    for path, operations in schema.get("paths", {}).items():
        error = anthropic_error if is_anthropic_path(path) else openai_error
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": error}},
                    },
                )
            ok = responses.setdefault("200", {"description": "Successful Response"})
            if path in _DOWNLOADS:
                ok["content"] = {_DOWNLOADS[path]: {"schema": {"type": "string"}}}
            elif (
                "requestBody" in operation
                and method == "post"
                and not path.startswith("/v1/batches")
            ):
                # Real-time routes stream server-sent events when the body says stream: true.
                ok.setdefault("content", {})["text/event-stream"] = {"schema": {"type": "string"}}
            if (path, method) == ("/v1/files", "post"):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": upload}},
                }
            elif (path, method) == ("/v1/messages/batches", "post"):
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _message_batch_body(schemas)}},
                }
    _document_webhook_inputs(schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _message_batch_body(schemas: dict[str, Any]) -> dict[str, Any]:
    """The streamed create body, as strict as the envelope check (protocol/
    message_batch_input.py): unknown fields are refused; `params` are checked per request."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["requests"],
        "properties": {
            "requests": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["custom_id", "params"],
                    "properties": {
                        "custom_id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                        "params": _ref(anthropic_wire.MessageCreateParams, schemas),
                    },
                },
            }
        },
    }


def _document_webhook_inputs(schemas: dict[str, Any]) -> None:
    """What the webhook routes accept beyond their field types (protocol/webhook_wire.py
    checks them in code): an http(s) URL, and event types from EVENT_TYPES."""
    url = {"type": "string", "format": "uri", "maxLength": webhook_wire.MAX_URL_CHARS}
    event_type = {"type": "string", "enum": list(EVENT_TYPES)}
    event_types = {"type": "array", "items": event_type, "minItems": 1}
    for name, fields in (
        ("CreateWebhookEndpoint", {"url": url, "event_types": event_types}),
        ("UpdateWebhookEndpoint", {"url": url, "event_types": event_types}),
        ("TestWebhookEndpoint", {"event_type": event_type}),
    ):
        properties = schemas.get(name, {}).get("properties", {})
        for field, constraints in fields.items():
            if field not in properties:
                continue
            prop = properties[field]
            nullable = [s for s in prop.get("anyOf", []) if s.get("type") == "null"]
            keep = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
            properties[field] = (
                {**keep, "anyOf": [constraints, *nullable]} if nullable else {**keep, **constraints}
            )
