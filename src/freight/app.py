"""The application `freight serve` runs: the API's routes and middleware, the dashboard,
and the service's background work (Service.run) for as long as the app runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from freight import __version__, web
from freight.api import authentication, body_limit, errors, json_bodies, openapi
from freight.api.routes import batches, files, message_batches, meta, metrics, realtime, webhooks
from freight.service.runtime import Service


def create_app(svc: Service, *, preload: list[str] | None = None) -> FastAPI:
    """Build the app for `svc`. The worker (if any) runs for as long as the app does.

    `preload`: models whose engines start in the background at startup, so the first
    request does not wait for them.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        running = asyncio.create_task(svc.run(stop, preload=preload or (), sweep_uploads=True))
        try:
            yield
        finally:
            stop.set()
            await running
            await svc.close()

    app = FastAPI(title="Freight", version=__version__, lifespan=lifespan)
    app.state.service = svc
    errors.install(app)
    for module in (files, batches, message_batches, realtime, meta, metrics):
        app.include_router(module.router)
    app.include_router(webhooks.router)
    web.install(app, svc.settings)  # the dashboard at / and /ui/...
    openapi.install(app)  # error shapes and streamed bodies in /openapi.json
    # Added last = runs first: CORS (preflights need no key), the key gate, body limits,
    # then the JSON budget (on bodies the size limit let through).
    app.add_middleware(json_bodies.JsonBudget, settings=svc.settings)
    app.add_middleware(body_limit.BodyLimit, settings=svc.settings)
    app.add_middleware(authentication.AuthGate, keys=svc.keys)
    if svc.settings.security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=svc.settings.security.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app
