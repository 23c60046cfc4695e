"""The worker's side of Ray: which batches it hands to the cluster, and the hand-off itself.

With `[ray] address` set, a worker hands every in-progress batch with at least
`[ray] min_requests` open requests to the Ray cluster instead of claiming them for its
own engine. The run goes on in a thread while the worker keeps working; results land in
the store as they come, so the batch's counts move as usual and it is finalised as
usual once nothing is open. If the run fails (the cluster is unreachable, say), the
batch's requests go back to the queue and this worker runs the batch itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from freight.config import Settings
from freight.store import batches
from freight.store.db import Database
from freight.store.statuses import BatchStatus

log = logging.getLogger(__name__)


def is_large(num_open: int, min_requests: int) -> bool:
    """The policy: a batch goes to Ray when it has at least `min_requests` left to run."""
    return num_open > 0 and num_open >= min_requests


class RayHandOff:
    """Runs large batches on the Ray cluster on behalf of one worker."""

    def __init__(self, settings: Settings, db: Database, owner: str) -> None:
        self.settings = settings
        self.db = db
        self.owner = f"{owner}/ray"
        self.failed: set[str] = set()  # batches whose Ray run failed: this worker runs them
        self._stop = threading.Event()
        self.num_recorded = 0

    def wants(self, batch: batches.BatchRecord) -> bool:
        return (
            batch.status == BatchStatus.IN_PROGRESS
            and batch.id not in self.failed
            and is_large(batch.num_open, self.settings.ray.min_requests)
        )

    async def run(self, batch_id: str) -> None:
        """Hand the batch's queued requests to Ray; returns when the run ends."""
        try:
            await asyncio.to_thread(self._run, batch_id)
        except Exception:
            self.failed.add(batch_id)
            raise

    def stop(self) -> None:
        """Stop runs at their next block of results (worker shutdown); the rest is released."""
        self._stop.set()

    def _run(self, batch_id: str) -> None:
        from freight.cluster import executor

        executor.connect(self.settings.ray.address)
        run = executor.run_batch(self.db, self.settings, batch_id, self.owner, stop=self._stop)
        self.num_recorded += run.num_recorded
        log.info(
            "batch %s: Ray ran %d requests (%d recorded, %d to retry)",
            batch_id,
            run.num_leased,
            run.num_recorded,
            run.num_requeued,
        )
