"""The parts of a running Freight, wired together once: store, blobs, models, engines, worker.

`Service.run(stop)` is the background work of a Freight process, the same for
`freight serve` (app.py's lifespan) and `freight worker`: the batch worker, usage
recording, webhook sending where batch work runs, the sweep of uploads a crash cut
short, and preloading engines. The signal contract (first signal drains, second exits)
is `on_stop_signal`, for both.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable, Sequence

from freight.cluster.handoff import RayHandOff
from freight.config import Settings
from freight.engines import reaper
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service import access, quotas
from freight.service.webhook_sender import WebhookSender
from freight.store import blob_backends, orphans
from freight.store.blob_store import BlobStorage
from freight.store.db import open_database
from freight.usage.recorder import UsageRecorder
from freight.worker.dispatcher import Worker
from freight.worker.flex import FlexQueue

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signal(sig: int, *, stopping: bool, stop: Callable[[], None]) -> None:
    """The signal contract of `freight serve` and `freight worker`.

    First SIGTERM or SIGINT: `stop()` (stop taking work, let in-flight work finish for up
    to `[worker] drain_seconds`, give unfinished leases back, exit 0). A second one
    (`stopping`): exit at once. Nothing is lost even then: unreleased leases expire and
    another worker (or the next start) runs those requests again.
    """
    name = signal.Signals(sig).name
    if stopping:
        log.warning("second %s: exiting now; unfinished requests will be re-run", name)
        os._exit(1)
    log.info("%s: finishing in-flight work, then exiting", name)
    stop()


class Service:
    """Everything `freight serve`, `freight worker` and `freight run` share."""

    def __init__(
        self,
        settings: Settings,
        *,
        engines: EnginePool | None = None,
        blobs: BlobStorage | None = None,
        with_worker: bool = True,
    ) -> None:
        self.settings = settings
        reaper.reap(settings.run_dir)
        self.db = open_database(settings.sqlalchemy_url, settings.home)
        self.blobs = blobs or blob_backends.open_blob_storage(settings)
        self.registry = Registry(settings)
        self.keys = access.KeyRing(settings, self.db)
        self.quotas = quotas.Quotas(settings.quotas)
        self.owns_engines = engines is None
        self.engines = engines or EnginePool(settings, self.registry)
        # service_tier "flex" requests wait here for a slot (worker/flex.py).
        self.flex = FlexQueue(settings)
        self.worker: Worker | None = (
            Worker(
                settings,
                self.db,
                self.blobs,
                self.engines,
                self.registry,
                handoff=functools.partial(RayHandOff, settings, self.db)
                if settings.ray.address
                else None,
                flex=self.flex,
            )
            if with_worker
            else None
        )

    def kick_worker(self) -> None:
        """Tell this process's worker, if it has one, to look for work now (after a create
        or cancel); from the event loop's thread."""
        if self.worker is not None:
            self.worker.kick()

    async def run(
        self, stop: asyncio.Event, *, preload: Sequence[str] = (), sweep_uploads: bool = False
    ) -> None:
        """Do this process's background work until `stop` is set, then let it finish.

        `preload`: models whose engines start now, so the first request does not wait.
        `sweep_uploads`: delete the blobs of uploads a crash cut short (API processes).
        """
        settings = self.settings
        loading = [asyncio.create_task(self._preload(name)) for name in preload]
        tasks = [
            UsageRecorder(
                self.db, self.engines.meter, every_seconds=settings.metrics.usage_record_seconds
            ).run(stop)
        ]
        if self.worker is not None:
            tasks.append(self.worker.run(stop))
            # Webhooks are sent by the processes that do batch work.
            tasks.append(WebhookSender(settings.webhooks, self.db).run(stop))
        if sweep_uploads:
            sweeper = orphans.OrphanSweeper(
                self.db,
                self.blobs,
                grace_seconds=settings.quotas.orphan_grace_seconds,
                every_seconds=settings.quotas.orphan_sweep_seconds,
            )
            tasks.append(sweeper.run(stop))
        running = [asyncio.create_task(task) for task in tasks]
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in loading:
                task.cancel()
            await asyncio.gather(*loading, return_exceptions=True)
            await asyncio.gather(*running)

    async def _preload(self, name: str) -> None:
        try:
            await self.engines.get(name)
        except Exception:
            log.exception("could not start the engine for %s", name)

    async def close(self) -> None:
        if self.owns_engines:
            await self.engines.shutdown()
        self.db.dispose()
