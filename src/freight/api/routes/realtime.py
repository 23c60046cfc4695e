"""Real-time endpoints: every row of the ENDPOINTS table served as a POST route.

POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings and
/v1/messages answer at once, on the same model registry and the same engines
(EnginePool) as batch work, with REALTIME_PRIORITY so that the engines run them ahead of
queued batch requests, and counted in `EnginePool.realtime` so that the worker makes room
for them (worker/scheduler.py).

The pattern, for the next endpoint: add its row to `protocol/endpoints.py` with a request
model and its translation functions, and a `to_stream` if it can stream (engine events
-> `ServerSentEvent`s in its API's event format). This module then serves it,
non-streaming and streaming, with nothing added here: one parse (`endpoints.parse_body`,
the same check as a batch request's body), one check that the model is of the kind the
endpoint needs, and the endpoint's own `run` or `start_stream`.

`service_tier: "flex"` (a Freight extension of the SDKs' field) sends the request through
the flex queue instead (worker/flex.py): it waits for a slot, runs after real-time requests
and before batch work, and is recorded for the key's project at the batch price.

A streamed request is started before the response is (`Endpoint.start_stream` awaits the
engine's first output), so a request the engine rejects (a prompt over the context
length) still gets a plain HTTP 400, and a failure after that becomes the stream's last
event.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from freight import ids
from freight.api import errors, sse
from freight.api.deps import anthropic_headers, project, service
from freight.engines.base import FLEX_PRIORITY, REALTIME_PRIORITY, Generation
from freight.errors import FreightError, InvalidRequest
from freight.protocol import batch_input, endpoints, stream
from freight.service.runtime import Service
from freight.store.files import DEFAULT_PROJECT
from freight.upstream import passthrough
from freight.worker import flex

router = APIRouter(tags=["real-time"])


def _parse(endpoint: endpoints.AnyEndpoint, body: dict[str, Any], svc: Service) -> BaseModel:
    """The validated body, whose model exists (else 404) and serves `endpoint` (else 400);
    an alias in `model` is replaced by its model's own name, as in a batch."""
    if isinstance(asked := body.get("model"), str):
        body, _ = batch_input.with_canonical_model(body, asked, svc.registry.canonical)
    parsed = endpoints.parse_body(endpoint, body, in_batch=False)
    is_streamed = bool(getattr(parsed, "stream", False))
    if not is_streamed and getattr(parsed, "stream_options", None) is not None:
        raise InvalidRequest(
            "stream_options is only allowed when stream is true.", param="stream_options"
        )
    model: str = parsed.model  # type: ignore[attr-defined]
    problem = passthrough.serving_problem(svc.registry, model, endpoint.url, in_batch=False)
    if problem is not None:
        raise InvalidRequest(problem, param="model", code="model_not_supported")
    return parsed


async def serve(
    endpoint: endpoints.AnyEndpoint,
    request: Request,
    body: dict[str, Any],
    svc: Service,
    owner: str = DEFAULT_PROJECT,
) -> Response:
    """Answer one real-time request to `endpoint` (JSON, or SSE when `stream` is true).

    Counted against `owner`'s real-time quotas: a request, then its tokens.
    """
    svc.quotas.admit_realtime(owner)
    parsed = _parse(endpoint, body, svc)
    request_id = ids.new_id("rt-")
    tier = getattr(parsed, "service_tier", None)
    if tier == "flex":
        return await _serve_flex(endpoint, parsed, request, request_id, svc, owner)
    load = svc.engines.realtime
    if not getattr(parsed, "stream", False):
        with load.track():
            answer = await endpoint.run(svc.engines, parsed, request_id, priority=REALTIME_PRIORITY)
        svc.quotas.record_tokens(owner, answer.tokens.num_input + answer.tokens.num_output)
        return JSONResponse(_with_tier(answer.body, None if tier is None else "default"))

    streamable = _streamable(endpoint)
    with load.track():
        events = await streamable.start_stream(
            svc.engines,
            parsed,
            request_id,
            priority=REALTIME_PRIORITY,
            on_generation=lambda g: svc.quotas.record_tokens(
                owner, g.num_prompt_tokens + g.num_output_tokens
            ),
        )

    async def tracked() -> AsyncIterator[stream.ServerSentEvent]:
        with load.track():
            async for event in events:
                yield _event_with_tier(event, None if tier is None else "default")

    path = request.url.path
    return sse.response(tracked(), on_error=lambda exc: _error_event(path, exc))


def _streamable(endpoint: endpoints.AnyEndpoint) -> endpoints.Endpoint:
    if not isinstance(endpoint, endpoints.Endpoint):  # only text generation streams
        raise InvalidRequest(f"{endpoint.url} does not support stream: true.", param="stream")
    return endpoint


async def _serve_flex(
    endpoint: endpoints.AnyEndpoint,
    parsed: BaseModel,
    request: Request,
    request_id: str,
    svc: Service,
    owner: str,
) -> Response:
    """A `service_tier: "flex"` request: wait for a flex slot (429 with Retry-After if none
    frees up in time), run after real-time and before batch work, answer when done (or
    stream, holding the slot until the stream ends), and record it for `owner` at the
    batch price (worker/flex.py)."""
    model: str = parsed.model  # type: ignore[attr-defined]
    if not getattr(parsed, "stream", False):
        async with svc.flex.slot():
            answer = await endpoint.run(svc.engines, parsed, request_id, priority=FLEX_PRIORITY)
        svc.quotas.record_tokens(owner, answer.tokens.num_input + answer.tokens.num_output)
        await flex.record_usage(svc.db, owner, model, answer.tokens)
        return JSONResponse(_with_tier(answer.body, "flex"))

    streamable = _streamable(endpoint)
    finished: list[Generation] = []

    def on_generation(generation: Generation) -> None:
        finished.append(generation)
        svc.quotas.record_tokens(owner, generation.num_prompt_tokens + generation.num_output_tokens)

    release = await svc.flex.take()
    try:
        events = await streamable.start_stream(
            svc.engines, parsed, request_id, priority=FLEX_PRIORITY, on_generation=on_generation
        )
    except BaseException:
        release()
        raise

    async def held() -> AsyncIterator[stream.ServerSentEvent]:
        # only a stream that ran to its end is billed, as a request answered in full. It
        # is billed before its last event goes out: a client that has read the end may
        # hang up at once, and a stream whose client is gone is never resumed past the
        # event it was sending. The slot is freed after, so a freed slot means its usage
        # is on record.
        held_back: stream.ServerSentEvent | None = None
        try:
            async for event in events:
                if held_back is not None:
                    yield held_back
                held_back = _event_with_tier(event, "flex")
        except Exception:
            if held_back is not None:  # what came before a failure still goes out
                yield held_back
            raise
        else:
            await flex.record_usage(svc.db, owner, model, _token_counts(finished))
            if held_back is not None:
                yield held_back
        finally:
            release()

    events_out = held()
    weakref.finalize(events_out, release)  # a response never sent still frees its slot
    path = request.url.path
    return sse.response(events_out, on_error=lambda exc: _error_event(path, exc))


def _token_counts(generations: list[Generation]) -> endpoints.TokenCounts:
    return endpoints.TokenCounts(
        num_input=sum(g.num_prompt_tokens for g in generations),
        num_cached=sum(g.num_cached_tokens for g in generations),
        num_output=sum(g.num_output_tokens for g in generations),
    )


def _with_tier(body: dict[str, Any], tier: str | None) -> dict[str, Any]:
    """The response with the tier that served it, when the request named one (as OpenAI
    answers `service_tier`; on /v1/completions and /v1/messages a Freight extension)."""
    return body if tier is None else {**body, "service_tier": tier}


def _event_with_tier(event: stream.ServerSentEvent, tier: str | None) -> stream.ServerSentEvent:
    """A streamed event with the tier, where the whole answer's object is: each chunk of
    chat and completions, the `response` of a Responses event, the `message` of
    Anthropic's message_start."""
    data = event.data
    if tier is None or not isinstance(data, dict):
        return event
    if data.get("object") in ("chat.completion.chunk", "text_completion"):
        return stream.ServerSentEvent(_with_tier(data, tier), event.event)
    for key in ("response", "message"):
        inner = data.get(key)
        if isinstance(inner, dict):
            return stream.ServerSentEvent({**data, key: _with_tier(inner, tier)}, event.event)
    return event


def _error_event(path: str, exc: Exception) -> stream.ServerSentEvent:
    if isinstance(exc, FreightError):  # an engine that died or refused: its own status
        status, message = exc.status_code, exc.message
    else:
        status, message = 500, "The server had an internal error while streaming."
    body = errors.error_body(path, status, message)
    return stream.ServerSentEvent(body, event="error" if errors.is_anthropic_path(path) else None)


def _route(
    endpoint: endpoints.AnyEndpoint,
) -> Callable[..., Coroutine[Any, Any, Response]]:
    async def handler(
        request: Request,
        body: dict[str, Any] = Body(..., description=f"A {endpoint.url} request body."),
        svc: Service = Depends(service),
        owner: str = Depends(project),
    ) -> Response:
        return await serve(endpoint, request, body, svc, owner)

    handler.__name__ = "create_" + endpoint.url.strip("/").replace("/", "_")
    return handler


for _endpoint in endpoints.ENDPOINTS.values():
    router.add_api_route(
        _endpoint.url,
        _route(_endpoint),
        methods=["POST"],
        dependencies=[Depends(anthropic_headers)] if _endpoint.api == "anthropic" else [],
        summary=f"{_endpoint.url} in real time",
    )
