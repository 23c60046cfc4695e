"""OpenAI wire models: Files, Batches, batch lines, chat and text completions, embeddings.

Field names, enums and shapes follow `shared/spec/batch-apis.md` section 1 and the
published OpenAPI description. Request models forbid unknown fields, so a typo in a
batch line's body becomes a per-line 400 rather than a silently ignored parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from freight.engines.base import JsonOutput
from freight.protocol import forced_tools
from freight.protocol.json_output import ResponseFormat, check_schema
from freight.protocol.request_model import Items, RequestModel

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class _Strict(RequestModel):
    pass


# --- Files ---------------------------------------------------------------------------


class FileObject(BaseModel):
    id: str = Field(description="`file-...`")
    object: Literal["file"] = "file"
    bytes: int
    created_at: int = Field(description="Unix seconds.")
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = Field(
        "processed", description="Deprecated upstream, still required by the SDK."
    )
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# --- Batches -------------------------------------------------------------------------


class BatchError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = Field(None, description="1-based line of the input file.")


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None
    expected_completion_at: int | None = Field(
        None,
        description="Freight extension: when the batch is expected to end (unix seconds), "
        "from this deployment's measured throughput; null until it has history to go on.",
    )
    cache: bool | None = Field(
        None,
        description="Freight extension: whether the result cache may answer this batch's "
        "deterministic requests (false when created with `cache: false`).",
    )
    priority: int = Field(
        0,
        description="Freight extension: higher runs first (the create field; default 0).",
    )
    at_risk: bool = Field(
        False,
        description="Freight extension: true while the batch runs and is expected, at the "
        "measured rate, to end after its deadline (`expected_completion_at` > `expires_at`).",
    )


class ExpiresAfter(_Strict):
    model_config = ConfigDict(strict=True)  # "3600" is not a number of seconds
    anchor: Literal["created_at"] = Field(description="Only `created_at` is supported.")
    seconds: int = Field(ge=3600, le=2_592_000)


class CreateBatch(_Strict):
    model_config = ConfigDict(strict=True)
    input_file_id: str = Field(description="An uploaded file with purpose `batch`.")
    endpoint: str = Field(description="Every line's `url` must equal this.")
    completion_window: str = Field(description="`24h`, or any `<n>s|m|h|d` (extension).")
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None
    cache: bool = Field(
        True,
        description="Freight extension (`extra_body`): false keeps the result cache out of "
        "this batch: every request runs on the engine, and its answers are not offered "
        "to later batches.",
    )
    priority: int | None = Field(
        None,
        description="Freight extension (send it with `extra_body`): higher runs first, from "
        "-1000 up to the project's bound (`[scheduler] max_batch_priority`); default 0.",
    )


class ListPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


# --- Batch input and output lines -------------------------------------------------------


class BatchRequestInput(_Strict):
    """One line of a batch input file."""

    custom_id: str = Field(description="Unique within the file; joins outputs to inputs.")
    method: Literal["POST"] = Field(description="Only POST.")
    url: str = Field(description="Must equal the batch's endpoint.")
    body: dict[str, Any] = Field(description="The endpoint's request body.")


class BatchResponse(BaseModel):
    status_code: int
    request_id: str
    body: dict[str, Any]


class LineError(BaseModel):
    code: str
    message: str


class BatchRequestOutput(BaseModel):
    """One line of a batch output or error file."""

    id: str
    custom_id: str
    response: BatchResponse | None
    error: LineError | None


# --- Chat completions and completions (request bodies) ------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Items[TextPart] | None = Field(
        None, validate_default=True, description="Text; null only in an assistant message."
    )
    name: str | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @field_validator("content")
    @classmethod
    def _content_unless_assistant(cls, value: Any, info: ValidationInfo) -> Any:
        role = info.data.get("role", "assistant")  # absent: its own error is reported
        if value is None and role != "assistant":
            raise ValueError(
                f"a {role} message needs content: a string or a list of text parts, not null"
            )
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


MAX_STOP_SEQUENCES = 4  # as upstream
# `service_tier`: "auto" and "default" are served in real time; "flex" waits with batch
# work and is billed at the batch price (worker/flex.py; single requests only). The other
# tiers the SDKs name ("scale", "priority", "fast") are refused with a 400 naming the field.
ServiceTier = Literal["auto", "default", "flex"]
SERVICE_TIER_NOTE = (
    '"auto" or "default": real time; "flex": queued with batch work (after real-time '
    "requests, before batch requests), answered (or streamed) once it has a slot, and "
    "billed at the batch price (single requests only)."
)


class _SamplingBody(_Strict):
    model: str = Field(description="A model from GET /v1/models.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | Items[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="A 64-bit integer.")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    service_tier: ServiceTier | None = Field(None, description=SERVICE_TIER_NOTE)

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(
                f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed, not {len(value)}"
            )
        return value


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="A JSON Schema of the arguments; none: no arguments."
    )
    strict: bool | None = Field(None, description="Accepted: the schema is always enforced.")

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_schema(value)


class ChatTool(_Strict):
    """A function tool: forced by `tool_choice`, or offered to the model (`auto`)."""

    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(_SamplingBody):
    messages: Annotated[Items[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    logprobs: Literal[False] | None = None
    response_format: ResponseFormat | None = Field(
        None, description="text, json_object, or json_schema (enforced while decoding)."
    )
    tools: Items[ChatTool] | None = Field(None, description="Tools the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="A named function, or `required` with one tool: a forced call."
    )
    parallel_tool_calls: bool | None = Field(
        None, description="Accepted: a forced call is always exactly one tool call."
    )
    safety_identifier: str | None = Field(None, description="Accepted and ignored.")
    prompt_cache_key: str | None = Field(
        None, description="Accepted and ignored: vLLM's prefix cache needs no key."
    )

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @model_validator(mode="after")
    def _tool_choice_forces_one_tool(self) -> ChatCompletionRequest:
        forced_tools.check_choice(
            forced=self.forced_tool(),  # its own errors, at parse time
            auto=self.is_auto_tool_choice,
            stream=bool(self.stream),
            shaped=self.response_format is not None and self.response_format.type != "text",
            spelling=forced_tools.OPENAI,
        )
        return self

    def _tools(self) -> list[forced_tools.ForcedTool]:
        return [
            forced_tools.ForcedTool(
                t.function.name,
                t.function.parameters or forced_tools.EMPTY_OBJECT_SCHEMA,
                t.function.description,
            )
            for t in self.tools or []
        ]

    def forced_tool(self) -> forced_tools.ForcedTool | None:
        """The function `tool_choice` forces, or None for a plain reply."""
        choice = self.tool_choice
        if choice != "required" and not isinstance(choice, NamedToolChoice):
            return None  # none, auto, or no tool_choice
        return forced_tools.pick(
            self._tools(),
            choice.function.name if isinstance(choice, NamedToolChoice) else None,
            any_tool=choice == "required",
            spelling=forced_tools.OPENAI,
        )

    @property
    def is_auto_tool_choice(self) -> bool:
        """Tools the model may call or not (`auto`, the default): its parser decides."""
        return bool(self.tools) and self.tool_choice in (None, "auto")

    def template_tools(self) -> str | None:
        return forced_tools.chat_template_tools(
            self.forced_tool(), self.is_auto_tool_choice, self._tools()
        )

    def json_output(self) -> JsonOutput | None:
        """The shape the engine must decode: a forced function's arguments, or the format's."""
        tool = self.forced_tool()
        if tool is not None:
            return tool.json_output()
        return self.response_format.to_json_output() if self.response_format else None


class CompletionRequest(_SamplingBody):
    prompt: str | Items[str] | Items[int] | Items[Items[int]] = Field(
        description="Text, texts, token ids, or lists of token ids."
    )
    max_tokens: int | None = Field(16, ge=1, description="Default 16, as upstream.")
    echo: bool | None = None
    suffix: None = None
    logprobs: None = None
    best_of: None = None

    @property
    def output_limit(self) -> int | None:
        return self.max_tokens


# --- Responses ---------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(BaseModel):
    id: str = Field(description="`call_...`")
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="A forced tool's call.")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


# --- Embeddings -------------------------------------------------------------------------

MAX_EMBEDDING_INPUTS = 2048  # per request, as upstream
EmbeddingInput = str | tuple[int, ...]


def _embedding_input_error() -> PydanticCustomError:
    return PydanticCustomError(
        "invalid_embedding_input",
        "input must be a non-empty string, a list of up to {limit} non-empty strings, a "
        "non-empty list of token ids, or a list of up to {limit} non-empty lists of token ids",
        {"limit": MAX_EMBEDDING_INPUTS},
    )


def _is_token_array(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


class CreateEmbeddingRequest(_Strict):
    model: str = Field(description="An embeddings model from GET /v1/models.")
    input: str | list[Any] = Field(
        description="A string, a list of strings, a list of token ids, or a list of them."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: little-endian float32 bytes, base64-encoded."
    )
    dimensions: int | None = Field(None, ge=1, description="Must equal the model's own.")
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> str | list[Any]:
        if isinstance(value, str):
            if not value:
                raise _embedding_input_error()
            return value
        if _is_token_array(value):
            return value  # type: ignore[no-any-return]
        if not isinstance(value, list) or not value or len(value) > MAX_EMBEDDING_INPUTS:
            raise _embedding_input_error()
        if all(isinstance(x, str) and x for x in value) or all(_is_token_array(x) for x in value):
            return value
        raise _embedding_input_error()

    def inputs(self) -> tuple[EmbeddingInput, ...]:
        """Each input to embed, in order: a text or a token id array."""
        if isinstance(self.input, str):
            return (self.input,)
        if _is_token_array(self.input):
            return (tuple(self.input),)
        return tuple(x if isinstance(x, str) else tuple(x) for x in self.input)


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of float32 bytes.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "freight"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
