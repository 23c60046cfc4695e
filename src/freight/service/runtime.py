"""The parts of a running Freight, wired together once: store, blobs, models, engines, worker."""

from __future__ import annotations

from freight.config import Settings
from freight.engines import reaper
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service import access, quotas
from freight.store import blob_store
from freight.store.blob_store import BlobStorage
from freight.store.db import open_database
from freight.worker.dispatcher import Worker


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
        self.blobs = blobs or blob_store.open_blob_storage(settings)
        self.registry = Registry(settings)
        self.keys = access.KeyRing(settings, self.db)
        self.quotas = quotas.Quotas(settings.quotas)
        self.owns_engines = engines is None
        self.engines = engines or EnginePool(settings, self.registry)
        self.worker: Worker | None = (
            Worker(settings, self.db, self.blobs, self.engines, self.registry)
            if with_worker
            else None
        )

    async def close(self) -> None:
        if self.owns_engines:
            await self.engines.shutdown()
        self.db.dispose()
