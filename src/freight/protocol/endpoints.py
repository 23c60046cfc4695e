"""Endpoint dispatch: one table from URL to request model, engine work and wire response.

Batch lines, Message Batch requests, `freight run` and the real-time routes
(api/routes/realtime.py) all go through `ENDPOINTS`, so an endpoint is added in exactly one
place: a row here, with its translation functions in the module for its URL
(protocol/completions.py, messages.py, responses_api.py, embeddings.py).

Each row knows which kind of model it needs (`task`: text generation or embeddings) and
how to run a parsed body on that model's engine (`run`, and `start_stream` for text
generation), so no caller branches on the URL: the worker and the real-time routes run
every endpoint the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from freight.engines.base import (
    BATCH_PRIORITY,
    EmbeddingRequest,
    Embeddings,
    Generation,
    GenerationRequest,
    Task,
)
from freight.errors import FreightError
from freight.protocol import (
    anthropic_wire,
    completions,
    embeddings,
    messages,
    openai_wire,
    request_model,
    responses_api,
    stream,
)
from freight.protocol.body_errors import BodyError, json_type, openai_body
from freight.protocol.stream import ServerSentEvent

if TYPE_CHECKING:
    from freight.engines.pool import EnginePool

__all__ = [
    "ENDPOINTS",
    "Answer",
    "AnyEndpoint",
    "BodyError",
    "EmbeddingsEndpoint",
    "Endpoint",
    "TokenCounts",
    "get",
    "model_problem",
    "parse_body",
]

R = TypeVar("R")
Api = Literal["openai", "anthropic"]


def openai_error_body(error: FreightError, status_code: int) -> dict[str, Any]:
    """How a rejected request is stored for its errored result line, in OpenAI's shape."""
    return openai_body(error)


@dataclass(frozen=True)
class TokenCounts:
    """What one request cost, for the batch's usage totals (the engine's own counts)."""

    num_input: int
    num_cached: int = 0
    num_output: int = 0


@dataclass(frozen=True)
class Answer:
    """A successful response body and its token counts."""

    body: dict[str, Any]
    tokens: TokenCounts


class Share(Protocol):
    """How `run` calls the engine: at once (the default), or shared with identical
    requests (the worker's `runner.SharedResults`, by batch and dedup key)."""

    def __call__(self, compute: Callable[[], Awaitable[R]]) -> Awaitable[R]: ...


async def at_once(compute: Callable[[], Awaitable[R]]) -> R:
    return await compute()


@dataclass(frozen=True)
class Endpoint:
    """A text generation endpoint: bodies become GenerationRequests, Generations a body.

    `to_stream` turns the engine's events into the endpoint's SSE events (None: the
    endpoint cannot stream). `error_body` renders a rejected body in the endpoint's API
    shape, as stored for a batch request's error result. `api` says which batch API may
    carry the endpoint: OpenAI batch files name only `openai` URLs.
    """

    url: str
    request_model: type[BaseModel]
    to_generations: Callable[[Any, str], list[GenerationRequest]]
    to_response: Callable[[Any, list[Generation]], dict[str, Any]]
    to_stream: Callable[[Any, stream.EngineEvents], AsyncIterator[ServerSentEvent]] | None = None
    error_body: Callable[[FreightError, int], dict[str, Any]] = openai_error_body
    api: Api = "openai"
    task: ClassVar[Task] = "generate"

    def _work(self, body: Any, request_id: str, priority: int) -> list[GenerationRequest]:
        return [
            dataclasses.replace(w, priority=priority) for w in self.to_generations(body, request_id)
        ]

    async def run(
        self,
        engines: EnginePool,
        body: Any,
        request_id: str,
        *,
        priority: int = BATCH_PRIORITY,
        share: Share = at_once,
    ) -> Answer:
        """Generate for every prompt of `body`; its response and the engine's token counts."""
        engine = await engines.get(body.model)
        work = self._work(body, request_id, priority)

        async def generate() -> list[Generation]:
            if len(work) == 1:  # the common case: no gather, no extra task
                return [await engine.generate(work[0])]
            return list(await asyncio.gather(*(engine.generate(w) for w in work)))

        generations = await share(generate)
        tokens = TokenCounts(
            num_input=sum(g.num_prompt_tokens for g in generations),
            num_cached=sum(g.num_cached_tokens for g in generations),
            num_output=sum(g.num_output_tokens for g in generations),
        )
        return Answer(self.to_response(body, generations), tokens)

    async def start_stream(
        self,
        engines: EnginePool,
        body: Any,
        request_id: str,
        *,
        priority: int,
        on_generation: Callable[[Generation], None] | None = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Start streaming `body`: returns once the engine has produced its first output.

        A request the engine refuses (a prompt over the context length) therefore raises
        here, before any response is sent; later failures are the stream's to report.
        `on_generation` sees each prompt's finished Generation (its token counts).
        """
        if self.to_stream is None:
            raise BodyError(f"{self.url} does not support stream: true.", param="stream")
        engine = await engines.get(body.model)
        work = self._work(body, request_id, priority)
        engine_events = stream.merge([engine.stream(w) for w in work])
        if on_generation is not None:
            engine_events = stream.tap_generations(engine_events, on_generation)
        first = await anext(engine_events)
        return self.to_stream(body, stream.prepend(first, engine_events))


@dataclass(frozen=True)
class EmbeddingsEndpoint:
    """An embeddings endpoint: a body becomes one EmbeddingRequest, its vectors a body."""

    url: str
    request_model: type[BaseModel]
    to_request: Callable[[Any, str], EmbeddingRequest]
    to_response: Callable[[Any, Embeddings], dict[str, Any]]
    error_body: Callable[[FreightError, int], dict[str, Any]] = openai_error_body
    api: Api = "openai"
    task: ClassVar[Task] = "embed"

    async def run(
        self,
        engines: EnginePool,
        body: Any,
        request_id: str,
        *,
        priority: int = BATCH_PRIORITY,
        share: Share = at_once,
    ) -> Answer:
        """Embed every input of `body`; its response and the tokens the model read."""
        engine = await engines.get_embedder(body.model)
        request = dataclasses.replace(self.to_request(body, request_id), priority=priority)
        result = await share(lambda: engine.embed(request))
        return Answer(self.to_response(body, result), TokenCounts(result.num_prompt_tokens))


AnyEndpoint = Endpoint | EmbeddingsEndpoint


ENDPOINTS: dict[str, AnyEndpoint] = {
    e.url: e
    for e in (
        Endpoint(
            completions.CHAT_URL,
            openai_wire.ChatCompletionRequest,
            completions.chat_generations,
            completions.chat_response,
            completions.chat_stream,
        ),
        Endpoint(
            completions.COMPLETIONS_URL,
            openai_wire.CompletionRequest,
            completions.completion_generations,
            completions.completion_response,
            completions.completion_stream,
        ),
        Endpoint(
            responses_api.URL,
            responses_api.CreateResponse,
            responses_api.to_generations,
            responses_api.to_response,
            responses_api.to_stream,
        ),
        EmbeddingsEndpoint(
            embeddings.URL,
            openai_wire.CreateEmbeddingRequest,
            embeddings.to_request,
            embeddings.to_response,
        ),
        Endpoint(
            messages.URL,
            anthropic_wire.MessageCreateParams,
            messages.to_generations,
            messages.to_response,
            messages.to_stream,
            messages.error_body,
            api="anthropic",
        ),
    )
}


def supported_urls(api: str = "openai") -> str:
    return ", ".join(url for url, e in ENDPOINTS.items() if e.api == api)


def get(url: str, api: str = "openai") -> AnyEndpoint:
    """The endpoint for `url` if the `api`'s batches may carry it; else a BodyError."""
    endpoint = ENDPOINTS.get(url)
    if endpoint is None or endpoint.api != api:
        raise BodyError(
            f"Unsupported endpoint '{url}'. Supported: {supported_urls(api)}.", param="endpoint"
        )
    return endpoint


def model_problem(url: str, model: str, model_task: Task) -> str | None:
    """Why `model` (which does `model_task`) cannot serve `url`, or None if it can."""
    endpoint = ENDPOINTS[url]
    if endpoint.task == model_task:
        return None
    serves = ", ".join(e.url for e in ENDPOINTS.values() if e.task == model_task)
    kind = "an embeddings model" if model_task == "embed" else "a text generation model"
    return (
        f"The model '{model}' is {kind}: it serves {serves}, not {url}. "
        f"Use a model that serves {url} (GET /v1/models lists the models)."
    )


def parse_body(endpoint: AnyEndpoint, body: Any, *, in_batch: bool) -> BaseModel:
    """Validate a request body; raise BodyError with an OpenAI-style message and param.

    Strictly, as upstream validates: a number given as a string (`"max_tokens": "5"`)
    or `true` for 1 is refused, not converted; an integer is still a valid float.
    """
    try:
        parsed = endpoint.request_model.model_validate(body, strict=True)
    except ValidationError as exc:
        raise body_error_from(exc) from None
    if in_batch and getattr(parsed, "stream", None):
        raise BodyError("stream is not supported in batch requests; remove it.", param="stream")
    if in_batch and getattr(parsed, "service_tier", None) == "flex":
        raise BodyError(
            "service_tier 'flex' is for single requests; a batch request already runs as "
            "batch work: remove it.",
            param="service_tier",
        )
    if isinstance(parsed, openai_wire.CompletionRequest):
        completions.completion_prompts(parsed)  # an empty prompt list is a BodyError
    return parsed


def _is_union_label(part: int | str) -> bool:
    """pydantic puts each union member's name into error locations (`str`, `list[int]`,
    `TextPart`); clients wrote field names, which are snake_case."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper() or part in _TYPE_NAMES)


_TYPE_NAMES = {"str", "int", "float", "bool", "none", "dict", "list"}


def body_error_from(exc: ValidationError) -> BodyError:
    errors = exc.errors(include_url=False)
    for err in errors:
        err["loc"] = tuple(p for p in err["loc"] if not _is_union_label(p))
    # With unions, each member reports its own error: the deepest location is the member
    # the client meant; at equal depth (e.g. neither a string nor a list) name them all.
    depth = max(len(err["loc"]) for err in errors)
    deepest = [err for err in errors if len(err["loc"]) == depth]
    err = deepest[0]
    if err["type"] == request_model.UNKNOWN_FIELD:  # raised by the object, about a field
        err["loc"] = (*err["loc"], err["ctx"]["field"])
    loc = ".".join(str(p) for p in err["loc"])
    if not loc and isinstance(err.get("ctx", {}).get("param"), str):
        loc = err["ctx"]["param"]  # a check of the whole body, about one field
    if err["type"] in ("extra_forbidden", request_model.UNKNOWN_FIELD):
        return BodyError(f"Unrecognized request argument supplied: {loc}", param=loc)
    if err["type"] == "missing":
        return BodyError(f"Missing required parameter: '{loc}'.", param=loc)
    same_place = dict.fromkeys(
        e["msg"].removeprefix("Value error, ") for e in deepest if e["loc"] == err["loc"]
    )
    reason = "; or ".join(same_place)
    if not loc:  # a check of the body as a whole
        return BodyError(f"Invalid request body: {reason}.")
    if all(e["type"].endswith("_type") for e in deepest if e["loc"] == err["loc"]):
        # The wrong kind of value (a string for an integer): say which kind it was.
        return BodyError(
            f"Invalid type for '{loc}': {reason}, not {json_type(err['input'])}.", param=loc
        )
    return BodyError(f"Invalid value for '{loc}': {reason}.", param=loc)
