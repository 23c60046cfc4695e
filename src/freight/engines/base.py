"""The engine interface: what the worker and the real-time API need from a model runner.

The protocol layer turns each wire body into a `GenerationRequest`; a generation engine
turns that into a `Generation`. Embeddings models are a second kind of engine with their
own request and result (`EmbeddingRequest` -> `Embeddings`), so neither interface carries
the other's fields. Engines own templating and tokenization, because they own the
tokenizer; everything above them speaks in messages and text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from freight.errors import EngineUnavailable, InvalidRequest

FinishReason = Literal["stop", "length"]
Task = Literal["generate", "embed"]  # what a model does; each endpoint needs one of these


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class JsonOutput:
    """Constrain the output to JSON: any JSON object, or an instance of a JSON schema.

    `schema_json` is the schema as JSON text (None: any object), checked by the protocol
    layer; kept as text so that Sampling stays immutable and hashable.
    """

    schema_json: str | None = None


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, already defaulted by the protocol layer."""

    max_tokens: int | None = None  # None: up to the context length
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_k: int | None = None  # None: no top-k cut (Anthropic's `top_k`)
    json_output: JsonOutput | None = None  # structured outputs; None: free text


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to run. Exactly one of `messages`, `text`, `token_ids` is set."""

    request_id: str
    model: str
    sampling: Sampling
    messages: tuple[Message, ...] | None = None
    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    priority: int = 0  # lower runs first; real-time requests use REALTIME_PRIORITY
    # Continue the last (assistant) message instead of starting a new turn: Anthropic's
    # prefill. Only with `messages`.
    continue_final_message: bool = False
    # Tool definitions for the chat template, as JSON text (OpenAI's function shape);
    # only with `messages`. A forced tool constrains the output (`sampling.json_output`);
    # with `is_auto_tool_choice` the model may call any of them, and the engine's
    # tool-call parser finds the calls in its output (`Choice.tool_calls`).
    tools_json: str | None = None
    is_auto_tool_choice: bool = False


# Engine priorities, lower first: real time, then flex-tier requests (worker/flex.py),
# then batch work.
REALTIME_PRIORITY = -2
FLEX_PRIORITY = -1
BATCH_PRIORITY = 0


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model chose to make (auto tool choice): arguments as JSON text."""

    name: str
    arguments: str


@dataclass
class Choice:
    text: str
    num_tokens: int
    finish_reason: FinishReason
    stop_sequence: str | None = None  # which of `Sampling.stop` ended it, if one did
    # Auto tool choice: the calls the parser found; `text` is then the rest of the output.
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class Generation:
    num_prompt_tokens: int
    num_cached_tokens: int
    choices: list[Choice] = field(default_factory=list)

    @property
    def num_output_tokens(self) -> int:
        return sum(c.num_tokens for c in self.choices)


@dataclass
class Delta:
    """A piece of streamed output for choice `index`; the last one has `finish_reason`.

    The first Delta of a stream also carries the prompt's token counts where the engine
    knows them, so a stream can report input usage up front (Anthropic's `message_start`)
    instead of only in the final Generation.
    """

    index: int
    text: str
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int | None = None
    num_cached_tokens: int | None = None


class RequestRejected(InvalidRequest):
    """The engine refused the request itself (e.g. the prompt exceeds the context).

    Permanent: retrying cannot help. The message names the limit; `code` is the
    OpenAI error code to report, if there is a specific one. A real-time caller gets a
    400; `upstream_status` is an upstream server's own 4xx, which the request's batch
    error line reports as its status (`line_status`).
    """

    def __init__(
        self, message: str, *, code: str | None = None, upstream_status: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.upstream_status = upstream_status

    @property
    def line_status(self) -> int:
        return self.upstream_status or self.status_code


def no_tool_call_parser(model: str) -> RequestRejected:
    """The refusal of auto tool choice by an engine that has no tool-call parser."""
    return RequestRejected(
        f"tool_choice 'auto' needs a tool-call parser for the model '{model}': set "
        "`tool_call_parser` to one of vLLM's parsers for its output format (e.g. 'hermes' "
        "for <tool_call> JSON) in its [[models]] entry, or force the tool with tool_choice "
        "(Anthropic: {'type': 'tool', 'name': ...}; OpenAI: a named function)."
    )


class EngineDied(EngineUnavailable):
    """The engine stopped while the request was running. Transient: retry elsewhere."""

    advice = "Retry the request."  # a real-time caller's; the worker retries batch requests


class Engine(Protocol):
    """What every text generation engine provides."""

    name: str
    max_num_seqs: int
    max_model_len: int

    async def start(self) -> None: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta | Generation]:
        """Yield Deltas as text arrives, then the final Generation (usage)."""
        ...

    async def abort(self, request_ids: list[str]) -> None: ...

    async def shutdown(self) -> None: ...


# --- embeddings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingRequest:
    """Texts (or token id arrays, in the model's own vocabulary) to embed, in order."""

    request_id: str
    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int | None = None  # None: the model's own; anything else must equal it
    priority: int = 0  # lower runs first, as for generation


@dataclass
class Embeddings:
    """One vector per input, in input order, and the tokens the model read."""

    vectors: list[list[float]]
    num_prompt_tokens: int


class EmbeddingEngine(Protocol):
    """What every embeddings engine provides."""

    name: str

    async def start(self) -> None: ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings: ...

    async def abort(self, request_ids: list[str]) -> None: ...

    async def shutdown(self) -> None: ...
