"""Endpoint dispatch: one table from URL to request model, engine requests and wire response.

Batch lines, `freight run` and the real-time routes all go through `ENDPOINTS`, so an
endpoint is added in exactly one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from freight import ids
from freight.engines.base import Generation, GenerationRequest, Message, Sampling
from freight.protocol import openai as wire


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
class Endpoint:
    """How one URL's bodies become engine work and come back as wire objects."""

    url: str
    request_model: type[BaseModel]
    to_generations: Callable[[Any, str], list[GenerationRequest]]
    to_response: Callable[[Any, list[Generation]], dict[str, Any]]


def sampling_from(body: wire._SamplingBody, max_tokens: int | None) -> Sampling:
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
            sampling=sampling_from(body, body.output_limit),
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


ENDPOINTS: dict[str, Endpoint] = {
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
    )
}


def supported_urls() -> str:
    return ", ".join(ENDPOINTS)


def get(url: str) -> Endpoint:
    try:
        return ENDPOINTS[url]
    except KeyError:
        raise BodyError(
            f"Unsupported endpoint '{url}'. Supported: {supported_urls()}.", param="endpoint"
        ) from None


def parse_body(endpoint: Endpoint, body: Any, *, in_batch: bool) -> BaseModel:
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


def body_error_from(exc: ValidationError) -> BodyError:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return BodyError(f"Unrecognized request argument supplied: {loc}", param=loc)
    if err["type"] == "missing":
        return BodyError(f"Missing required parameter: '{loc}'.", param=loc)
    return BodyError(f"Invalid value for '{loc}': {err['msg']}.", param=loc)
