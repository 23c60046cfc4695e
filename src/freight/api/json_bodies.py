"""JSON request bodies held to the JSON budget (protocol/json_budget.py) before decoding.

FastAPI reads a JSON body whole, decodes it with Python's json and validates it with
pydantic: each of them recurses once per level of nesting. This middleware sees every
JSON body's bytes as the app reads them and, once the last chunk is in, checks them
(nesting within `[limits] max_json_depth`, no lone surrogate, UTF-8): a body that fails
is a 400 in the path's API shape, before anything is decoded. So every JSON route, the
real-time endpoints, /v1/batches and webhooks alike, has the same budget.

Message Batch creates are not buffered here: their handler streams the body to storage
and `message_batch_input.check_envelope` applies the same budget to each request.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freight.config import Settings
from freight.errors import InvalidRequest
from freight.protocol import json_budget

STREAMED_ROUTES = frozenset({("POST", "/v1/messages/batches")})
SUBJECT = "The request body"


def is_json(scope: Scope) -> bool:
    """Whether FastAPI decodes this request's body as JSON: its content-type is JSON
    (`application/json`, `application/*+json`) or missing."""
    value = dict(scope["headers"]).get(b"content-type", b"")
    media = value.split(b";")[0].strip().lower()
    return (
        not media
        or media == b"application/json"
        or (media.startswith(b"application/") and media.endswith(b"+json"))
    )


def problem(body: bytes, max_depth: int) -> str | None:
    """What makes `body` unacceptable as a JSON request body, or None."""
    if body and json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        # Python's json would decode UTF-16 and UTF-32 too; the APIs take UTF-8 only,
        # and the budget's byte-level checks read UTF-8.
        return f"{SUBJECT} is not UTF-8. Send JSON encoded as UTF-8."
    return json_budget.problem(body, SUBJECT, max_depth)


class JsonBudget:
    """Refuses JSON request bodies over the JSON budget with a 400, once they are read."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_depth = settings.limits.max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        if (scope["method"], path) in STREAMED_ROUTES:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []  # the same bytes objects the app keeps: no copies

        async def checked() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    chunks.clear()
                    why = problem(body, self.max_depth)
                    if why is not None:
                        # FastAPI chains it to its own 400; api/errors.py renders it.
                        raise InvalidRequest(why, code="invalid_body")
            return message

        await self.app(scope, checked, send)
