"""POST /v1/responses in real time: one JSON `response`, or its events as server-sent events.

With `stream: true` the engine's first output is awaited before the stream opens, so a
request the engine refuses (too long a prompt, a schema it cannot compile) still gets a
plain 400; a failure after that ends the stream with a `response.failed` event. A client
that disconnects closes the engine's stream, which aborts the request in the engine.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from freight import ids
from freight.api import inference
from freight.api.deps import service
from freight.engines.base import (
    REALTIME_PRIORITY,
    Delta,
    EngineDied,
    Generation,
    RequestRejected,
)
from freight.protocol import responses
from freight.service import Service

router = APIRouter(tags=["responses"])
URL = "/v1/responses"


@router.post(URL, response_model=None)
async def create_response(
    raw: dict[str, Any] = Body(...), svc: Service = Depends(service)
) -> JSONResponse | StreamingResponse:
    body = cast(responses.CreateResponse, inference.parse(svc, URL, raw))
    response_id = ids.new_id("resp_")
    if not body.stream:
        answer = await inference.run(svc, URL, body, response_id)
        return JSONResponse(answer.body)
    return await _stream(svc, body, response_id)


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event, named by its `type` as upstream sends them."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


async def _stream(
    svc: Service, body: responses.CreateResponse, response_id: str
) -> StreamingResponse:
    engine = await svc.engines.get(body.model)
    (work,) = responses.to_generations(body, response_id)
    outputs = engine.stream(dataclasses.replace(work, priority=REALTIME_PRIORITY))
    try:
        first = await anext(outputs)
    except RequestRejected as exc:
        raise inference.rejected(exc) from None
    except EngineDied as exc:
        raise inference.died(exc) from None
    events = responses.StreamEvents(body, response_id)

    async def send() -> AsyncIterator[bytes]:
        try:
            for event in events.start():
                yield sse(event)
            item: Delta | Generation = first
            while isinstance(item, Delta):
                if item.text:
                    yield sse(events.delta(item.text))
                item = await anext(outputs)
            for event in events.finish(item):
                yield sse(event)
        except (EngineDied, RequestRejected) as exc:
            yield sse(events.fail(str(exc)))
        finally:
            close = getattr(outputs, "aclose", None)
            if close is not None:
                await close()

    return StreamingResponse(
        send(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )
