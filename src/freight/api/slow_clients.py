"""Defences against clients that hold connections open or send oversized request heads.

uvicorn by itself bounds neither the size of a request head nor the time a client may
take to send it or its body, so a client could hold a connection, and the memory of a
4 MB header, for as long as it liked. The limits live in `[server]` (config.py):

- `protocol_class(limits)` is uvicorn's httptools protocol (what uvicorn picks when
  httptools is installed, as `uvicorn[standard]` does) with a cap on open connections
  (one more is answered 503 at once and closed), a limit on the size of a request head
  (431), and a deadline for a complete head, counted from the connection's opening or
  from the end of its previous exchange (408, or a silent close when nothing of a new
  request has arrived). A trickled head gains nothing: the deadline is not renewed.
- `BodyTimeout` is ASGI middleware that answers 408 when the app has waited
  `body_timeout_seconds` for the next piece of a request body. A body nobody reads (the
  app answered early) gets the same idle limit from the protocol.

What is left to a reverse proxy (docs/guides/security.md): a minimum body rate, and limits per
client address.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from freight.api import errors
from freight.config import ServerSettings

log = logging.getLogger(__name__)

# The bytes of a request line and head besides the target and the header fields:
# "METHOD ", " HTTP/1.1\r\n", the final "\r\n".
_REQUEST_LINE_BYTES = 24


class _HeadTooLarge(Exception):
    """Raised inside the parser to stop it: uvicorn logs "Invalid HTTP request received."
    and calls `send_400_response`, which answers 431 instead."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Freight's connection limits (`limits`)."""

    limits: ClassVar[ServerSettings]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timer: asyncio.TimerHandle | None = None
        self.is_reading_head = True  # the next bytes belong to a request head
        self.num_head_bytes = 0
        self.is_head_too_large = False

    # --- the connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning(
                "refused a connection: %d are open, the limit is %d ([server] max_connections)",
                len(self.connections) - 1,
                self.limits.max_connections,
            )
            self.answer_and_close(
                503,
                f"The server is at its limit of {self.limits.max_connections} open "
                "connections ([server] max_connections). Retry shortly.",
                extra_headers=[("retry-after", "1")],
            )
            return
        self.start_timer(self.limits.header_timeout_seconds, self.on_head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.is_reading_head:
            self.num_head_bytes += len(data)
        elif self.is_discarding_body():
            # The app has answered without reading the whole body: the rest may arrive,
            # but a pause as long as the body timeout ends the connection.
            self.start_timer(self.limits.body_timeout_seconds, self.on_discard_timeout)
        super().data_received(data)
        # Counted before the parser saw the data, so an unfinished head over the limit
        # is refused here; a finished one is measured in on_headers_complete.
        if (
            self.is_reading_head
            and self.num_head_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self.refuse_large_head()

    # --- parser callbacks ------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.is_reading_head = False
        self.stop_timer()
        if self.parsed_head_bytes() > self.limits.max_header_bytes:
            self.is_head_too_large = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.is_reading_head = True
        self.num_head_bytes = 0
        if self.cycle is not None and self.cycle.response_complete:
            # The discarded rest of a body has arrived: now the next head is due.
            self.start_timer(self.limits.header_timeout_seconds, self.on_head_timeout)

    def on_response_complete(self) -> None:
        is_next_request_waiting = bool(self.pipeline)
        super().on_response_complete()
        if is_next_request_waiting or self.transport.is_closing():
            return
        if self.is_reading_head:
            self.start_timer(self.limits.header_timeout_seconds, self.on_head_timeout)
        else:
            self.start_timer(self.limits.body_timeout_seconds, self.on_discard_timeout)

    def send_400_response(self, msg: str) -> None:
        if self.is_head_too_large:
            self.refuse_large_head()
            return
        super().send_400_response(msg)

    # --- limits ----------------------------------------------------------------------

    def is_discarding_body(self) -> bool:
        """Whether the body still arriving belongs to a request already answered."""
        return not self.is_reading_head and self.cycle is not None and self.cycle.response_complete

    def parsed_head_bytes(self) -> int:
        fields = sum(len(name) + len(value) + 4 for name, value in self.headers)
        return _REQUEST_LINE_BYTES + len(self.url) + fields

    def refuse_large_head(self) -> None:
        log.warning(
            "refused a request head over %d bytes ([server] max_header_bytes) from %s",
            self.limits.max_header_bytes,
            _address(self.client),
        )
        self.answer_and_close(
            431,
            f"The request head (request line and headers) is larger than the limit of "
            f"{self.limits.max_header_bytes} bytes ([server] max_header_bytes).",
        )

    def on_head_timeout(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        if self.num_head_bytes == 0:
            self.transport.close()  # an idle connection: nothing to answer
            return
        log.info(
            "closed a connection from %s: no complete request head within %g s",
            _address(self.client),
            self.limits.header_timeout_seconds,
        )
        self.answer_and_close(
            408,
            f"The request head did not arrive within {self.limits.header_timeout_seconds:g} s "
            "of the connection opening or of the previous response "
            "([server] header_timeout_seconds).",
        )

    def on_discard_timeout(self) -> None:
        self.timer = None
        if not self.transport.is_closing():
            self.transport.close()  # the client has its answer; the rest of its body is moot

    def answer_and_close(
        self, status: int, message: str, extra_headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Send an error in the path's API shape, unless a response is being sent; close."""
        self.stop_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_error_response(status, message, self.path(), extra_headers))
        self.transport.close()

    def path(self) -> str:
        url: bytes = getattr(self, "url", b"")  # set when a request begins
        return url.split(b"?", 1)[0].decode("latin-1") or "/"

    def start_timer(self, seconds: float, callback: Any) -> None:
        self.stop_timer()
        self.timer = self.loop.call_later(seconds, callback)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def protocol_class(limits: ServerSettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn as `http=`, bound to `limits`."""
    return type("FreightHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class BodyTimeout:
    """Answers 408 (and closes) when a request body stalls for `seconds` while the app reads it.

    The wait is per piece, not for the whole body: a large upload on a slow link is
    fine as long as it keeps moving. After the body is complete, `receive` only waits
    for a disconnect (streamed responses listen for one), and that wait is not bounded.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_body_complete = False

        async def timed_receive() -> Message:
            nonlocal is_body_complete
            if is_body_complete:
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                log.info(
                    "closed a connection from %s: its request body stalled for %g s",
                    _address(scope.get("client")),
                    self.seconds,
                )
                # Rendered in the API's shape by api/errors.py, like the 413 of body_limit.
                raise HTTPException(
                    408,
                    f"The request body stopped arriving: nothing for {self.seconds:g} s "
                    "([server] body_timeout_seconds).",
                    headers={"connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                is_body_complete = True
            return message

        await self.app(scope, timed_receive, send)


def _error_response(
    status: int, message: str, path: str, extra_headers: list[tuple[str, str]] | None
) -> bytes:
    body = json.dumps(errors.error_body(path, status, message), separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in extra_headers or []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _address(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
