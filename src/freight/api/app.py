"""The FastAPI application: routers, error shapes, and the worker's life inside the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from freight import __version__, web
from freight.api import authentication, body_limit, errors, json_bodies, openapi
from freight.api.routes import batches, files, message_batches, meta, metrics, realtime, webhooks
from freight.service.runtime import Service
from freight.service.webhook_sender import WebhookSender
from freight.store import orphans
from freight.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)


def create_app(svc: Service, *, preload: list[str] | None = None) -> FastAPI:
    """Build the app for `svc`. The worker (if any) runs for as long as the app does.

    `preload`: models whose engines start in the background at startup, so the first
    request does not wait for them.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        loading = [asyncio.create_task(_preload(svc, name)) for name in preload or []]
        worker = asyncio.create_task(svc.worker.run(stop)) if svc.worker is not None else None
        recorder = UsageRecorder(
            svc.db, svc.engines.meter, every_seconds=svc.settings.metrics.usage_record_seconds
        )
        recording = asyncio.create_task(recorder.run(stop))
        sweeper = orphans.OrphanSweeper(
            svc.db,
            svc.blobs,
            grace_seconds=svc.settings.quotas.orphan_grace_seconds,
            every_seconds=svc.settings.quotas.orphan_sweep_seconds,
        )
        sweeping = asyncio.create_task(sweeper.run(stop))  # uploads that a crash cut short
        # Webhooks are sent by the processes that do batch work (`freight worker` too).
        sending = (
            asyncio.create_task(WebhookSender(svc.settings.webhooks, svc.db).run(stop))
            if svc.worker is not None
            else None
        )
        try:
            yield
        finally:
            stop.set()
            for task in loading:
                task.cancel()
            await asyncio.gather(*loading, return_exceptions=True)
            if worker is not None:
                await worker
            await recording
            await sweeping
            if sending is not None:
                await sending
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


async def _preload(svc: Service, name: str) -> None:
    try:
        await svc.engines.get(name)
    except Exception:
        log.exception("could not start the engine for %s", name)
