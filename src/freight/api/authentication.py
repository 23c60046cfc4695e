"""The /v1 gate: once API keys exist, every /v1 call needs a valid one (401 otherwise).

An ASGI middleware rather than a dependency per route, so that nothing under /v1 (an
unknown route included) answers without a key. The caller's Identity is left in the
request state for the routes (`deps.identity`). 401s come in the path's API shape.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from freight.api import errors
from freight.api.deps import presented_key
from freight.errors import Unauthorized
from freight.service.access import KeyRing


def is_gated(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class AuthGate:
    """Checks the key of every /v1 request before the app sees it."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_gated(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            identity = await asyncio.to_thread(self.keys.identify, presented_key(request))
        except Unauthorized as exc:
            response = errors.freight_error_response(request, exc)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)
