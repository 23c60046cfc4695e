"""Anthropic wire models: Messages create params, Message, stream events, Message Batches.

Field names, enums and shapes follow `shared/spec/batch-apis.md` section 2 and the
official `anthropic` SDK's types. Request models forbid unknown fields, so a parameter
Freight does not support (thinking, images, tool results) is a clear 400 naming it rather than
silently ignored. Timestamps are RFC 3339 strings, unlike OpenAI's unix seconds.

Structured outputs (`output_config.format`) and forced tool use (`tools` with a
`tool_choice` that names one) are decoded by the engine against their JSON schema
(protocol/json_output.py, protocol/forced_tools.py); `auto` tool choice is left to the
model's tool-call parser.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from freight.engines.base import JsonOutput
from freight.protocol import forced_tools
from freight.protocol.body_errors import json_type
from freight.protocol.json_output import check_schema
from freight.protocol.request_model import Items, RequestModel

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]
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


class JSONOutputFormat(_Strict):
    """`output_config.format`: the reply is JSON matching `schema` (enforced while decoding)."""

    type: Literal["json_schema"] = Field(description="Only `json_schema`.")
    json_schema: dict[str, Any] = Field(alias="schema", description="A JSON Schema object.")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_schema(value)


class OutputConfig(_Strict):
    format: JSONOutputFormat | None = Field(None, description="A JSON schema for the reply.")
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        None, description="Accepted and ignored: Freight's models do not reason at length."
    )


class ToolParam(_Strict):
    """A client tool: forced by `tool_choice`, or offered to the model (`auto`)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    input_schema: dict[str, Any] = Field(description="A JSON Schema of type object.")
    description: str | None = None
    type: Literal["custom"] | None = None
    strict: bool | None = Field(None, description="Accepted: the schema is always enforced.")
    cache_control: CacheControl | None = Field(None, description="Accepted and ignored.")

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("a tool's input_schema must be a JSON Schema of type 'object'")
        return check_schema(value)


class ToolChoice(_Strict):
    """`tool`: call the named tool; `any`: call the only tool; `none`: answer in text;
    `auto` (the default): the model chooses, where it has a tool-call parser."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, description="With `tool`: the tool to call.")
    disable_parallel_tool_use: bool | None = Field(
        None, description="Accepted: a forced call is always exactly one tool use."
    )


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
    service_tier: Literal["auto", "standard_only", "flex"] | None = Field(
        None,
        description='"auto" and "standard_only": real time; "flex" (a Freight extension): '
        "queued with batch work, answered (or streamed) once it has a slot, billed at the "
        "batch price.",
    )
    cache_control: CacheControl | None = Field(None, description="Accepted and ignored.")
    output_config: OutputConfig | None = Field(
        None, description="`format`: structured output; `effort` is accepted and ignored."
    )
    tools: Items[ToolParam] | None = Field(None, description="Tools the model may call.")
    tool_choice: ToolChoice | None = Field(
        None, description="`tool` (by name), or `any` with one tool: a forced tool call."
    )

    _system_blocks = field_validator("system", mode="before")(_text_blocks)

    @field_validator("messages")
    @classmethod
    def _check_prefill(cls, messages: list[InputMessage]) -> list[InputMessage]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and last.text() != last.text().rstrip():
            raise ValueError("the final assistant content (a prefill) cannot end with whitespace")
        return messages

    @model_validator(mode="after")
    def _tool_choice_forces_one_tool(self) -> MessageCreateParams:
        forced_tools.check_choice(
            forced=self.forced_tool(),  # its own errors, at parse time
            auto=self.is_auto_tool_choice,
            stream=bool(self.stream),
            shaped=bool(self.output_config and self.output_config.format),
            spelling=forced_tools.ANTHROPIC,
        )
        return self

    def _tools(self) -> list[forced_tools.ForcedTool]:
        return [
            forced_tools.ForcedTool(t.name, t.input_schema, t.description) for t in self.tools or []
        ]

    def forced_tool(self) -> forced_tools.ForcedTool | None:
        """The tool `tool_choice` forces, or None for a plain text reply."""
        choice = self.tool_choice
        if choice is None or choice.type in ("auto", "none"):
            return None
        return forced_tools.pick(
            self._tools(),
            choice.name,
            any_tool=choice.type == "any",
            spelling=forced_tools.ANTHROPIC,
        )

    @property
    def is_auto_tool_choice(self) -> bool:
        """Tools the model may call or not (`auto`, the default): its parser decides."""
        has_tools = bool(self.tools)
        return has_tools and (self.tool_choice is None or self.tool_choice.type == "auto")

    def template_tools(self) -> str | None:
        return forced_tools.chat_template_tools(
            self.forced_tool(), self.is_auto_tool_choice, self._tools()
        )

    def json_output(self) -> JsonOutput | None:
        """The shape the engine must decode: a forced tool's input, or output_config's."""
        tool = self.forced_tool()
        if tool is not None:
            return tool.json_output()
        output_format = self.output_config.format if self.output_config else None
        if output_format is None:
            return None
        return JsonOutput(json.dumps(output_format.json_schema, separators=(",", ":")))

    def system_text(self) -> str | None:
        if not self.system:
            return None
        return "".join(block.text for block in self.system)


# --- Message (the response) -------------------------------------------------------------


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str = Field(description="`toolu_...`")
    name: str
    input: dict[str, Any]


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
    content: list[TextBlock | ToolUseBlock]
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
    content_block: TextBlock | ToolUseBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDelta | InputJsonDelta


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
