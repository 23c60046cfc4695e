"""Anthropic wire models: Messages create params, Message, stream events, Message Batches.

Field names, enums and shapes follow `shared/spec/batch-apis.md` section 2 and the
official `anthropic` SDK's types. Request models forbid unknown fields, so a parameter
Freight does not support (tools, thinking, images) is a clear 400 naming it rather than
silently ignored. Timestamps are RFC 3339 strings, unlike OpenAI's unix seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from freight.protocol.body_errors import json_type
from freight.protocol.request_model import Items, RequestModel

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]
ProcessingStatus = Literal["in_progress", "canceling", "ended"]

# HTTP status -> Anthropic error `type` (the SDK maps statuses to exception classes).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type_for(status_code: int) -> str:
    default = "api_error" if status_code >= 500 else "invalid_request_error"
    return ERROR_TYPES.get(status_code, default)


def error_body(
    status_code: int,
    message: str,
    request_id: str | None = None,
    *,
    error_type: str | None = None,
) -> dict[str, Any]:
    """Anthropic's ErrorResponse: `{"type": "error", "error": {type, message}, request_id}`.

    The type is `error_type`, else the one Anthropic gives `status_code`.
    """
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type or error_type_for(status_code), "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def rfc3339(unix_seconds: int | None) -> str | None:
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Strict(RequestModel):
    pass


# --- Messages create params --------------------------------------------------------------


class CacheControl(_Strict):
    """Accepted for compatibility; vLLM's prefix cache reuses shared prefixes by itself."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlockParam(_Strict):
    type: Literal["text"] = Field(description="Only text blocks: Freight's models read text.")
    text: str
    cache_control: CacheControl | None = Field(None, description="Accepted and ignored.")
    citations: list[Any] | None = Field(None, description="Accepted and ignored.")


def _text_blocks(value: Any) -> Any:
    """A string is shorthand for one text block; other block types get a clear error."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list):
        for block in value:
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind != "text":
                raise ValueError(
                    f"content blocks of type '{kind}' are not supported; "
                    "Freight's models take 'text' blocks only"
                )
        return value
    if value is None:  # an optional field's null
        return value
    raise ValueError(f"expected a string or a list of text blocks, not {json_type(value)}")


def _content_blocks(value: Any) -> Any:
    if value is None:
        raise ValueError("expected a string or a list of text blocks, not null")
    return _text_blocks(value)


class InputMessage(_Strict):
    role: Literal["user", "assistant", "system"]
    content: Items[TextBlockParam] = Field(description="A string, or a list of text blocks.")

    _blocks = field_validator("content", mode="before")(_content_blocks)

    def text(self) -> str:
        return "".join(block.text for block in self.content)


class RequestMetadata(_Strict):
    user_id: str | None = Field(None, description="An opaque id of the end user; not used.")


class MessageCreateParams(_Strict):
    """The body of POST /v1/messages, and the `params` of each Message Batch request."""

    model: str = Field(description="A model from GET /v1/models.")
    max_tokens: int = Field(ge=1, description="The most tokens to generate (at least 1).")
    messages: Items[InputMessage] = Field(min_length=1, description="The conversation so far.")
    system: Items[TextBlockParam] | None = Field(None, description="A system prompt.")
    stop_sequences: Items[str] | None = Field(None, description="Stop at any of these strings.")
    temperature: float | None = Field(None, ge=0, le=1, description="Default 1.0.")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    metadata: RequestMetadata | None = None
    stream: bool | None = Field(None, description="Real-time only: answer as SSE events.")
    service_tier: Literal["auto", "standard_only"] | None = Field(
        None, description="Accepted and ignored: every request is served alike."
    )
    cache_control: CacheControl | None = Field(None, description="Accepted and ignored.")

    _system_blocks = field_validator("system", mode="before")(_text_blocks)

    @field_validator("messages")
    @classmethod
    def _check_prefill(cls, messages: list[InputMessage]) -> list[InputMessage]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and last.text() != last.text().rstrip():
            raise ValueError("the final assistant content (a prefill) cannot end with whitespace")
        return messages

    def system_text(self) -> str | None:
        if not self.system:
            return None
        return "".join(block.text for block in self.system)


# --- Message (the response) -------------------------------------------------------------


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class Usage(BaseModel):
    """Anthropic counts cache reads apart: total input = input_tokens + cache reads."""

    input_tokens: int = Field(description="Prompt tokens not read from the prefix cache.")
    output_tokens: int
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = Field(0, description="Prompt tokens from the cache.")


class Message(BaseModel):
    id: str = Field(description="`msg_...`")
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


# --- Stream events (POST /v1/messages with stream: true) ----------------------------------


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message = Field(description="Empty content and a null stop_reason.")


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: TextBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDelta


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(BaseModel):
    stop_reason: StopReason
    stop_sequence: str | None = None


class MessageDeltaUsage(BaseModel):
    """Cumulative totals for the whole message (the SDK overwrites, not adds)."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


# --- Message Batches ----------------------------------------------------------------------


class MessageBatchRequestCounts(BaseModel):
    """Sums to the total. Requests stay `processing` until the whole batch ends."""

    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class MessageBatch(BaseModel):
    id: str = Field(description="`msgbatch_...`")
    type: Literal["message_batch"] = "message_batch"
    processing_status: ProcessingStatus
    request_counts: MessageBatchRequestCounts
    created_at: str = Field(description="RFC 3339.")
    expires_at: str = Field(description="RFC 3339: created + 24 h.")
    ended_at: str | None = Field(None, description="RFC 3339, once processing has ended.")
    cancel_initiated_at: str | None = None
    archived_at: str | None = Field(None, description="Freight keeps results: always null.")
    results_url: str | None = Field(
        None, description="Absolute URL of the results JSONL, once processing has ended."
    )


class MessageBatchPage(BaseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class DeletedMessageBatch(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"
