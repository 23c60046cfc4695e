"""Server-sent events: encoding `ServerSentEvent`s onto an HTTP response.

The protocol layer decides what to send (protocol/stream.py and each endpoint's
`to_stream`); this module only frames it (`event: ...`, `data: ...`, blank line) and
turns a failure after the response has started into a last `error` event in the API's
own shape, because the status line has already gone out as 200.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from freight.protocol.stream import ServerSentEvent

log = logging.getLogger(__name__)

HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def encode(event: ServerSentEvent) -> bytes:
    data = event.data if isinstance(event.data, str) else json.dumps(event.data)
    head = f"event: {event.event}\n" if event.event else ""
    return f"{head}data: {data}\n\n".encode()


def response(
    events: AsyncIterator[ServerSentEvent],
    *,
    on_error: Callable[[Exception], ServerSentEvent],
    on_close: Callable[[], Any] | None = None,
) -> StreamingResponse:
    """Stream `events`; `on_error` renders a mid-stream failure; `on_close` runs at the end
    however the stream ends (finished, failed, or the client went away)."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield encode(event)
        except Exception as exc:
            log.exception("stream failed after it started")
            yield encode(on_error(exc))
        finally:
            if on_close is not None:
                on_close()

    return StreamingResponse(body(), media_type="text/event-stream", headers=HEADERS)
