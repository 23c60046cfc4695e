"""Request body size limits on every route, enforced while the body arrives.

Most routes take at most `[security] max_body_bytes` (10 MiB). The two that take large
bodies keep their own, larger limits, which their handlers also enforce while streaming
(api/uploads.py): file uploads (`[limits] max_file_bytes`, plus room for the form around
the file) and Message Batch creates (`[limits] max_message_batch_bytes`). A declared
Content-Length over the limit is refused before any byte is read; a body that runs over
it while streaming is cut off there. Either way: 413 in the path's API shape.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freight.api import errors
from freight.config import Settings

FORM_OVERHEAD_BYTES = 1024 * 1024  # the multipart envelope and small fields around a file


def limits_by_route(settings: Settings) -> dict[tuple[str, str], int]:
    """(method, path) -> limit for the routes whose limit is not the default."""
    upload = settings.limits.max_file_bytes + FORM_OVERHEAD_BYTES
    return {
        ("POST", "/v1/files"): upload,
        ("POST", "/ui/batches"): upload,
        ("POST", "/v1/messages/batches"): settings.limits.max_message_batch_bytes,
    }


class BodyLimit:
    """Refuses request bodies over their route's limit with a 413."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.default = settings.security.max_body_bytes
        self.by_route = limits_by_route(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        limit = self.by_route.get((scope["method"], path), self.default)
        message = f"The request body is larger than the limit of {limit} bytes for {path}."
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = errors.error_response(Request(scope), 413, message)
            await response(scope, receive, send)
            return
        num_bytes = 0

        async def limited() -> Message:
            nonlocal num_bytes
            received = await receive()
            if received["type"] == "http.request":
                num_bytes += len(received.get("body", b""))
                if num_bytes > limit:
                    # An HTTPException passes through FastAPI's body parsing unchanged and
                    # is rendered in the API's shape by api/errors.py.
                    raise HTTPException(413, message)
            return received

        await self.app(scope, limited, send)
