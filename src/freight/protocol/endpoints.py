"""Endpoint dispatch: one table from URL to request model, engine work and wire response.

Batch lines, `freight run` and the real-time routes all go through `ENDPOINTS`, so an
endpoint is added in exactly one place. Each entry knows which kind of model it needs
(`task`: text generation or embeddings) and how to run a parsed body on that model's
engine (`run`), so callers never branch on the URL.
"""

from __future__ import annotations

import array
import asyncio
import base64
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from freight import ids
from freight.engines.base import (
    BATCH_PRIORITY,
    EmbeddingRequest,
    Embeddings,
    Generation,
    GenerationRequest,
    JsonOutput,
    Message,
    Sampling,
    Task,
)
from freight.protocol import openai as wire
from freight.protocol import responses

if TYPE_CHECKING:
    from freight.engines.pool import EnginePool


class BodyError(Exception):
    """A request body the endpoint rejects: becomes a 400 (a per-line error in batches)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        detail = wire.ErrorDetail(
            message=self.message, type="invalid_request_error", param=self.param, code=self.code
        )
        return wire.ErrorBody(error=detail).model_dump()


@dataclass(frozen=True)
class TokenCounts:
    """What one request cost, for the batch's usage totals."""

    num_input: int
    num_cached: int = 0
    num_output: int = 0


@dataclass(frozen=True)
class Answer:
    """A successful response body and its token counts."""

    body: dict[str, Any]
    tokens: TokenCounts


@dataclass(frozen=True)
class Endpoint:
    """A text generation endpoint: bodies become GenerationRequests, Generations a body."""

    url: str
    request_model: type[BaseModel]
    to_generations: Callable[[Any, str], list[GenerationRequest]]
    to_response: Callable[[Any, list[Generation]], dict[str, Any]]
    task: ClassVar[Task] = "generate"

    async def run(
        self, engines: EnginePool, body: Any, request_id: str, *, priority: int = BATCH_PRIORITY
    ) -> Answer:
        engine = await engines.get(body.model)
        work = [
            dataclasses.replace(w, priority=priority) for w in self.to_generations(body, request_id)
        ]
        generations = list(await asyncio.gather(*(engine.generate(w) for w in work)))
        tokens = TokenCounts(
            num_input=sum(g.num_prompt_tokens for g in generations),
            num_cached=sum(g.num_cached_tokens for g in generations),
            num_output=sum(g.num_output_tokens for g in generations),
        )
        return Answer(self.to_response(body, generations), tokens)


@dataclass(frozen=True)
class EmbeddingsEndpoint:
    """An embeddings endpoint: a body becomes one EmbeddingRequest, its vectors a body."""

    url: str
    request_model: type[BaseModel]
    to_request: Callable[[Any, str], EmbeddingRequest]
    to_response: Callable[[Any, Embeddings], dict[str, Any]]
    task: ClassVar[Task] = "embed"

    async def run(
        self, engines: EnginePool, body: Any, request_id: str, *, priority: int = BATCH_PRIORITY
    ) -> Answer:
        engine = await engines.get_embedder(body.model)
        request = dataclasses.replace(self.to_request(body, request_id), priority=priority)
        embeddings = await engine.embed(request)
        return Answer(self.to_response(body, embeddings), TokenCounts(embeddings.num_prompt_tokens))


AnyEndpoint = Endpoint | EmbeddingsEndpoint


def sampling_from(
    body: wire._SamplingBody, max_tokens: int | None, *, json_output: JsonOutput | None = None
) -> Sampling:
    stop = body.stop
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        n=body.n or 1,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        json_output=json_output,
    )


def usage_of(generations: list[Generation]) -> wire.Usage:
    num_prompt = sum(g.num_prompt_tokens for g in generations)
    num_output = sum(g.num_output_tokens for g in generations)
    return wire.Usage(
        prompt_tokens=num_prompt,
        completion_tokens=num_output,
        total_tokens=num_prompt + num_output,
        prompt_tokens_details=wire.PromptTokensDetails(
            cached_tokens=sum(g.num_cached_tokens for g in generations)
        ),
    )


# --- /v1/chat/completions -----------------------------------------------------------------


def _chat_messages(body: wire.ChatCompletionRequest) -> tuple[Message, ...]:
    # Chat templates know system/user/assistant; OpenAI's newer `developer` is a system turn.
    return tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in body.messages
    )


def _chat_generations(body: wire.ChatCompletionRequest, request_id: str) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            request_id=request_id,
            model=body.model,
            sampling=sampling_from(
                body,
                body.output_limit,
                json_output=body.response_format.to_json_output() if body.response_format else None,
            ),
            messages=_chat_messages(body),
        )
    ]


def _chat_response(
    body: wire.ChatCompletionRequest, generations: list[Generation]
) -> dict[str, Any]:
    (generation,) = generations
    return wire.ChatCompletion(
        id=ids.new_id("chatcmpl-"),
        created=int(time.time()),
        model=body.model,
        choices=[
            wire.ChatChoice(
                index=i,
                message=wire.AssistantMessage(content=c.text),
                finish_reason=c.finish_reason,
            )
            for i, c in enumerate(generation.choices)
        ],
        usage=usage_of(generations),
    ).model_dump()


# --- /v1/completions ------------------------------------------------------------------------


def completion_prompts(body: wire.CompletionRequest) -> list[str | tuple[int, ...]]:
    prompt = body.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise BodyError("prompt must not be empty", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [tuple(prompt)]  # type: ignore[arg-type]
    return [p if isinstance(p, str) else tuple(p) for p in prompt]  # type: ignore[arg-type,misc]


def _completion_generations(
    body: wire.CompletionRequest, request_id: str
) -> list[GenerationRequest]:
    sampling = sampling_from(body, body.output_limit)
    requests = []
    for i, prompt in enumerate(completion_prompts(body)):
        rid = request_id if i == 0 else f"{request_id}.{i}"
        if isinstance(prompt, str):
            requests.append(GenerationRequest(rid, body.model, sampling, text=prompt))
        else:
            requests.append(GenerationRequest(rid, body.model, sampling, token_ids=prompt))
    return requests


def _completion_response(
    body: wire.CompletionRequest, generations: list[Generation]
) -> dict[str, Any]:
    prompts = completion_prompts(body)
    choices: list[wire.CompletionChoice] = []
    for prompt, generation in zip(prompts, generations, strict=True):
        prefix = prompt if body.echo and isinstance(prompt, str) else ""
        for c in generation.choices:
            choices.append(
                wire.CompletionChoice(
                    index=len(choices), text=prefix + c.text, finish_reason=c.finish_reason
                )
            )
    return wire.TextCompletion(
        id=ids.new_id("cmpl-"),
        created=int(time.time()),
        model=body.model,
        choices=choices,
        usage=usage_of(generations),
    ).model_dump()


# --- /v1/embeddings ------------------------------------------------------------------------


def _embedding_request(body: wire.CreateEmbeddingRequest, request_id: str) -> EmbeddingRequest:
    return EmbeddingRequest(request_id, body.model, body.inputs(), dimensions=body.dimensions)


def _base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32 bytes."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _embedding_response(body: wire.CreateEmbeddingRequest, result: Embeddings) -> dict[str, Any]:
    encode = _base64_floats if body.encoding_format == "base64" else None
    return wire.EmbeddingList(
        data=[
            wire.EmbeddingObject(index=i, embedding=encode(v) if encode else v)
            for i, v in enumerate(result.vectors)
        ],
        model=body.model,
        usage=wire.EmbeddingUsage(
            prompt_tokens=result.num_prompt_tokens, total_tokens=result.num_prompt_tokens
        ),
    ).model_dump()


ENDPOINTS: dict[str, AnyEndpoint] = {
    e.url: e
    for e in (
        Endpoint(
            "/v1/chat/completions",
            wire.ChatCompletionRequest,
            _chat_generations,
            _chat_response,
        ),
        Endpoint(
            "/v1/completions",
            wire.CompletionRequest,
            _completion_generations,
            _completion_response,
        ),
        Endpoint(
            "/v1/responses",
            responses.CreateResponse,
            responses.to_generations,
            responses.to_response,
        ),
        EmbeddingsEndpoint(
            "/v1/embeddings",
            wire.CreateEmbeddingRequest,
            _embedding_request,
            _embedding_response,
        ),
    )
}


def supported_urls() -> str:
    return ", ".join(ENDPOINTS)


def get(url: str) -> AnyEndpoint:
    try:
        return ENDPOINTS[url]
    except KeyError:
        raise BodyError(
            f"Unsupported endpoint '{url}'. Supported: {supported_urls()}.", param="endpoint"
        ) from None


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
    """Validate a request body; raise BodyError with an OpenAI-style message and param."""
    try:
        parsed = endpoint.request_model.model_validate(body)
    except ValidationError as exc:
        raise body_error_from(exc) from None
    if in_batch and getattr(parsed, "stream", None):
        raise BodyError("stream is not supported in batch requests; remove it.", param="stream")
    if endpoint.url == "/v1/completions":
        completion_prompts(parsed)  # type: ignore[arg-type]
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
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return BodyError(f"Unrecognized request argument supplied: {loc}", param=loc)
    if err["type"] == "missing":
        return BodyError(f"Missing required parameter: '{loc}'.", param=loc)
    same_place = dict.fromkeys(e["msg"] for e in deepest if e["loc"] == err["loc"])
    return BodyError(f"Invalid value for '{loc}': {'; or '.join(same_place)}.", param=loc)
