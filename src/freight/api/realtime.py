"""Real-time endpoints: every row of the ENDPOINTS table served as a POST route.

POST /v1/chat/completions, /v1/completions and /v1/messages answer at once, on the same
model registry and the same engines (EnginePool) as batch work, with REALTIME_PRIORITY
so that vLLM runs them ahead of queued batch requests, and counted in
`EnginePool.realtime` so that the worker makes room for them (worker/scheduler.py).

The pattern, for the next endpoint (e.g. /v1/responses, /v1/embeddings): add its row to
`protocol/endpoints.py` with a request model, `to_generations` and `to_response`, and a
`to_stream` if it can stream (engine events -> `ServerSentEvent`s in its API's event
format). This module then serves it, non-streaming and streaming, with nothing added
here: one parse (`endpoints.parse_body`, the same check as a batch request's body), one
engine call per prompt, and the endpoint's own translation back.

A streamed request is started before the response is: the first engine event is awaited
first, so a request the engine rejects (a prompt over the context length) still gets a
plain HTTP 400, and a failure after that becomes the stream's last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response

from freight import ids
from freight.api import errors, sse
from freight.api.deps import anthropic_headers, service
from freight.engines.base import REALTIME_PRIORITY, Delta, EngineDied, Generation, RequestRejected
from freight.errors import EngineUnavailable, FreightError, InvalidRequest
from freight.protocol import endpoints, stream
from freight.service import Service

router = APIRouter(tags=["real-time"])


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """Engine failures as API errors: a rejected prompt is the caller's 400."""
    try:
        yield
    except RequestRejected as exc:
        raise InvalidRequest(str(exc), code="context_length_exceeded") from exc
    except EngineDied as exc:
        raise EngineUnavailable(str(exc)) from exc


async def _chain(
    first: tuple[int, Delta | Generation], rest: stream.EngineEvents
) -> stream.EngineEvents:
    yield first
    async for item in rest:
        yield item


async def serve(
    endpoint: endpoints.Endpoint, request: Request, body: dict[str, Any], svc: Service
) -> Response:
    """Answer one real-time request to `endpoint` (JSON, or SSE when `stream` is true)."""
    try:
        parsed = endpoints.parse_body(endpoint, body, in_batch=False)
    except endpoints.BodyError as exc:
        raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None
    is_streamed = bool(getattr(parsed, "stream", False))
    if is_streamed and endpoint.to_stream is None:
        raise InvalidRequest(f"{endpoint.url} does not support stream: true.", param="stream")
    if not is_streamed and getattr(parsed, "stream_options", None) is not None:
        raise InvalidRequest(
            "stream_options is only allowed when stream is true.", param="stream_options"
        )
    engine = await svc.engines.get(parsed.model)  # type: ignore[attr-defined]
    work = [
        dataclasses.replace(w, priority=REALTIME_PRIORITY)
        for w in endpoint.to_generations(parsed, ids.new_id("rt-"))
    ]
    load = svc.engines.realtime
    if not is_streamed:
        with load.track(), _engine_errors():
            generations = list(await asyncio.gather(*(engine.generate(w) for w in work)))
        return JSONResponse(endpoint.to_response(parsed, generations))

    assert endpoint.to_stream is not None
    engine_events = stream.merge([engine.stream(w) for w in work])
    with load.track(), _engine_errors():
        first = await anext(engine_events)
    to_stream = endpoint.to_stream

    async def events() -> AsyncIterator[stream.ServerSentEvent]:
        with load.track():
            async for event in to_stream(parsed, _chain(first, engine_events)):
                yield event

    path = request.url.path
    return sse.response(events(), on_error=lambda exc: _error_event(path, exc))


def _error_event(path: str, exc: Exception) -> stream.ServerSentEvent:
    if isinstance(exc, RequestRejected):
        status, message = 400, str(exc)
    elif isinstance(exc, FreightError):
        status, message = exc.status_code, exc.message
    elif isinstance(exc, EngineDied):
        status, message = 503, str(exc)
    else:
        status, message = 500, "The server had an internal error while streaming."
    body = errors.error_body(path, status, message)
    return stream.ServerSentEvent(body, event="error" if errors.is_anthropic_path(path) else None)


def _route(
    endpoint: endpoints.Endpoint,
) -> Callable[..., Coroutine[Any, Any, Response]]:
    async def handler(
        request: Request,
        body: dict[str, Any] = Body(..., description=f"A {endpoint.url} request body."),
        svc: Service = Depends(service),
    ) -> Response:
        return await serve(endpoint, request, body, svc)

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
