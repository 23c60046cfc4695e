"""What each batch needs next from the worker, and the background steps that do it.

At each housekeeping pass the dispatcher hands `BatchSteps.advance` the active batches;
for each one the ladder in `next_step` picks at most one step (ingest, cancel, expire,
the Ray hand-off, finalize), which runs in the background with a bounded number of
attempts and a give-up that ends the batch anyway (worker/steps.py). What a step does to
the batch is its API's (worker/lifecycle.py). What it needs from the requests running
here, which the dispatcher owns, it asks through `Requests`: record the buffered results
before any result is written, and stop the requests a cancel or an expiry closes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Protocol

from freight.config import Settings
from freight.engines import weights
from freight.engines.registry import Registry
from freight.protocol import cache_keys
from freight.store import batch_requests, batches
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus
from freight.upstream import passthrough
from freight.worker import finalize, scheduler, steps
from freight.worker.lifecycle import IngestRules, lifecycle_for


class HandOff(Protocol):
    """Where large batches go instead of this worker's engine (cluster/handoff.py: Ray)."""

    def wants(self, batch: batches.BatchRecord) -> bool: ...

    async def run(self, batch_id: str) -> None: ...

    def stop(self) -> None: ...


class Requests(Protocol):
    """What a batch step needs from the dispatcher that runs the batch's requests."""

    async def flush(self) -> None:
        """Record every result buffered so far."""

    def abort(self, request_ids: list[str]) -> None:
        """Stop those of these requests that run here (aborted inside the engine)."""


class BatchSteps:
    """Starts each active batch's next step, at most one per batch at a time."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStorage,
        registry: Registry,
        upstream: passthrough.Passthrough,
        requests: Requests,
        *,
        handoff: HandOff | None,
        backoff: steps.Backoff,
        on_done: Callable[[], None],
    ) -> None:
        """`backoff(n)`: the pause after a step's n-th failed attempt; `on_done()`: called
        whenever a step ends, so that the batch's next step may start at once."""
        self.db = db
        self.blobs = blobs
        self.registry = registry
        self.upstream = upstream
        self.requests = requests
        self.handoff = handoff
        self.rules = IngestRules(
            settings.limits,
            scheduler.OrderPolicy.from_settings(settings.scheduler),
            has_model=registry.has,
            check_model=self._model_problem,
            route=upstream.route,
            canonical_model=registry.canonical,
            keys_for=cache_keys.keys_for(settings.cache.enabled, weights.weights_of(registry)),
        )
        self.runner = steps.Steps(
            db, settings.worker.max_batch_step_attempts, backoff, on_done=on_done
        )

    def is_busy(self, batch_id: str) -> bool:
        """A step of the batch is running (its requests wait until it ends)."""
        return self.runner.is_running(batch_id)

    def advance(self, active: list[batches.BatchRecord], now: float, wall: float) -> None:
        """Start what each batch needs next, unless a step of it runs or waits out a pause.

        `now`: monotonic time; `wall`: time.time(), for expiry.
        """
        for batch in active:
            step = self.next_step(batch, wall)
            if step is not None and self.runner.can_start(batch.id, step.name, now):
                self.runner.start(batch.id, step)

    async def stop(self) -> None:
        """Cancel the running steps (the worker stops); their attempts are not counted."""
        await self.runner.stop()

    def next_step(self, batch: batches.BatchRecord, wall: float) -> steps.Step | None:
        """What an active batch (batches.ACTIVE) needs next from this worker, if anything
        (at most one step at a time)."""
        run = functools.partial
        if batch.status == BatchStatus.VALIDATING:
            return steps.Step("ingest", run(self._ingest, batch), run(self._give_up_ingest, batch))
        if batch.status == BatchStatus.CANCELLING:
            # Never `in_progress`: no request ran, and its rows (if any) may not all be
            # there; the cancel makes them (for a Message Batch, one per request).
            cancel = (
                self._cancel if lifecycle_for(batch).is_ingested(batch) else self._cancel_uningested
            )
            return steps.Step(
                "cancel", run(cancel, batch), run(self._give_up_end, batch, BatchStatus.CANCELLED)
            )
        if batch.status == BatchStatus.IN_PROGRESS and wall >= batch.expires_at:
            return steps.Step(
                "expire",
                run(self._end_early, batch, BatchStatus.EXPIRED),
                run(self._give_up_end, batch, BatchStatus.EXPIRED),
            )
        if self.handoff is not None and self.handoff.wants(batch):
            return steps.Step("handoff", run(self.handoff.run, batch.id), give_up=None)
        if batch.status == BatchStatus.FINALIZING or batch.num_open == 0:
            return steps.Step(
                "finalize",
                run(self._finalize, batch),
                run(self._give_up_end, batch, BatchStatus.COMPLETED),
            )
        return None

    # --- the steps ------------------------------------------------------------------

    async def _ingest(self, batch: batches.BatchRecord) -> None:
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.ingest, self.db, self.blobs, batch, self.rules)

    async def _give_up_ingest(self, batch: batches.BatchRecord, reason: str) -> None:
        message = f"The batch's requests could not be queued: {reason}"
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.give_up_ingest, self.db, self.blobs, batch, message)

    def _model_problem(self, model: str, url: str) -> str | None:
        return passthrough.serving_problem(self.registry, model, url, in_batch=True)

    async def _cancel(self, batch: batches.BatchRecord) -> None:
        await self._end_early(batch, BatchStatus.CANCELLED)

    async def _cancel_uningested(self, batch: batches.BatchRecord) -> None:
        """Cancelled before its requests were queued (worker/unqueued.py), then finalised."""
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.cancel_uningested, self.db, self.blobs, batch)
        await asyncio.to_thread(api.finalize, self.db, self.blobs, batch.id, BatchStatus.CANCELLED)
        await asyncio.to_thread(api.delete_create_body, self.blobs, batch.id)

    async def _end_early(self, batch: batches.BatchRecord, end_status: BatchStatus) -> None:
        """Cancel or expire: finished lines stay, every open request gets its error line."""
        await self.upstream.end_batch(batch.id)  # cancel upstream; keep what it finished
        await self._close_open(batch.id, end_status)
        await self.requests.flush()
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.finalize, self.db, self.blobs, batch.id, end_status)

    async def _close_open(self, batch_id: str, end_status: BatchStatus) -> None:
        """End the batch's open requests as `end_status` ends them, aborting those here."""
        status, error = finalize.CLOSING[end_status]
        running = await asyncio.to_thread(
            self._write, batch_requests.close_open, batch_id, status, error
        )
        self.requests.abort(running)

    async def _finalize(self, batch: batches.BatchRecord) -> None:
        await self.requests.flush()
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.finalize, self.db, self.blobs, batch.id, BatchStatus.COMPLETED)

    async def _give_up_end(
        self, batch: batches.BatchRecord, end_status: BatchStatus, reason: str
    ) -> None:
        """Finalising, cancelling or expiring failed every attempt: end it all the same."""
        if end_status != BatchStatus.COMPLETED:  # without the upstream cancel, which may fail
            await self._close_open(batch.id, end_status)
        await self.requests.flush()
        api = lifecycle_for(batch)
        await asyncio.to_thread(api.give_up_end, self.db, self.blobs, batch.id, end_status, reason)
        await asyncio.to_thread(api.delete_create_body, self.blobs, batch.id)

    def _write(self, fn, *args):  # type: ignore[no-untyped-def]
        with self.db.write() as conn:
            return fn(conn, *args)
