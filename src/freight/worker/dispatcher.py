"""The worker loop: claim requests, keep the engine full, record results.

One asyncio task per running request keeps at most `max_in_flight` requests (default
2 x the engine's max_num_seqs, as vLLM's own run-batch does) inside the engine, so its
continuous batch never runs dry and never grows without bound; while real-time requests
share the engine the window shrinks (worker/scheduler.py). Results are buffered and
written in one transaction every `flush_seconds`; database work runs in threads so the
event loop (shared with the HTTP API in `freight serve`) never blocks on it.
Each batch's own steps (ingest, finalize, cancel, expiry) are started from here at each
housekeeping pass, and run in the background with a bounded number of attempts, after
which the batch ends anyway (worker/batch_steps.py, worker/steps.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable

from freight import ids
from freight.config import Settings
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.store import batch_requests, batches, faults, result_cache
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus, RequestStatus
from freight.upstream import passthrough
from freight.worker import batch_steps, runner, scheduler
from freight.worker.flex import FlexQueue

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 0.5


class Worker:
    """Runs every batch in the store to completion, alongside any other workers."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStorage,
        engines: EnginePool,
        registry: Registry,
        *,
        owner: str | None = None,
        handoff: Callable[[str], batch_steps.HandOff] | None = None,
        flex: FlexQueue | None = None,
    ) -> None:
        """`handoff(owner)` makes the hand-off for large batches, if any (Ray, built by
        service/runtime.py); `flex`, the flex requests this process's API runs, whose
        slots come out of the batch window (worker/flex.py)."""
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.engines = engines
        self.registry = registry
        self.flex = flex
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{ids.new_id('')[:8]}"
        self._shared = runner.SharedResults()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._pending: list[batch_requests.Outcome] = []
        self._storage_backoff = faults.Backoff()  # the loop's own store reads and writes
        self._flush_backoff = faults.Backoff()
        self._kick = asyncio.Event()
        self._last_housekeeping = 0.0
        # The in-progress batches as the last housekeeping read them (with every other
        # active batch, in one query): what each claim chooses from (`_runnable`).
        self._in_progress: list[batches.BatchRecord] = []
        self._last_renew = time.monotonic()
        self._last_reclaim = 0.0
        self._fair_turn = 0  # rotates the projects' order in fair_claims
        self.num_retries = 0
        self.num_recorded = 0
        self.num_given_back = 0  # batch requests taken back out of the engine for real-time
        self.num_passes = 0  # loop passes whose housekeeping and admission ran through
        self.num_served_from_cache = 0  # requests answered by the result cache, not the engine
        # Large batches go to a Ray cluster when one is configured (cluster/handoff.py).
        self.ray = handoff(self.owner) if handoff is not None else None
        # Models routed to an upstream Batch API (upstream/passthrough.py).
        self.passthrough = passthrough.Passthrough(
            settings, db, registry, self.owner, backoff=backoff_seconds
        )
        # Each batch's ingest, finalize, cancel or expiry, with bounded attempts.
        self.batch_steps = batch_steps.BatchSteps(
            settings,
            db,
            blobs,
            registry,
            self.passthrough,
            self,
            handoff=self.ray,
            backoff=backoff_seconds,
            on_done=self._step_done,
        )
        engines.realtime.subscribe(self._kick.set)

    def kick(self) -> None:
        """Look for work now (called by the API after a create or cancel)."""
        self._last_housekeeping = 0.0
        self._kick.set()

    @property
    def num_in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain and give back what was not finished."""
        flusher = asyncio.create_task(self._flush_loop(stop))
        # Operators (and test_scale_out) read this line to know the worker is at work.
        log.info("worker %s started (max in flight %d)", self.owner, self.policy().capacity)
        try:
            while not stop.is_set():
                wait = self.settings.worker.poll_seconds
                try:
                    await self._housekeep()
                    await self._fill()
                    self._storage_backoff.num_failures = 0
                    self.num_passes += 1
                except faults.STORAGE_ERRORS as exc:
                    # Keep what is in flight; look again once the store may be back.
                    wait = self._storage_backoff.failed(time.monotonic())
                    log.error(
                        "worker %s cannot reach the store: %s; trying again in %.1f s",
                        self.owner,
                        faults.describe(exc),
                        wait,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
                self._kick.clear()
        finally:
            await self._drain()
            flusher.cancel()
            await self.flush()
            log.info("worker %s stopped", self.owner)

    # --- admission -----------------------------------------------------------------

    def policy(self) -> scheduler.WindowPolicy:
        """The window policy for the engines started so far: by their device class, so a
        GPU's engine is read once it has started (worker/scheduler.py, `window_policy`)."""
        widths: list[scheduler.EngineWidth] = []
        for name, device in self.engines.devices().items():
            num = getattr(self.engines.engine(name), "max_num_seqs", None)
            if isinstance(num, int) and num > 0:  # text generation engines only
                widths.append(scheduler.EngineWidth(device, num))
        return scheduler.window_policy(self.settings, widths)

    def _window(self, policy: scheduler.WindowPolicy) -> int:
        load = self.engines.realtime
        return scheduler.batch_window(
            policy,
            num_in_flight=self.num_in_flight,
            num_realtime=load.num_active,
            seconds_since_realtime=load.seconds_since_last(time.monotonic()),
        )

    async def _fill(self) -> None:
        policy = self.policy()
        window = self._window(policy)
        await self._give_back(window, policy)
        num_flex = self.flex.num_running if self.flex is not None else 0
        want = scheduler.claim_size(
            scheduler.batch_claim_room(window, num_flex), self.num_in_flight
        )
        if want <= 0:
            return
        runnable = self._runnable()
        num_served = self.num_served_from_cache
        try:
            await self._claim_and_start(runnable, want)
        finally:
            if self.num_served_from_cache > num_served:  # answered without the engine:
                self._kick.set()  # claim again at once, there may be more to serve or run

    async def _claim_and_start(self, runnable: list[scheduler.RunnableBatch], want: int) -> None:
        # Fair share between projects first; then whatever a project could not use (its
        # open requests are already running) goes to the rest in claim order.
        self._fair_turn += 1
        drained = set()  # batches with nothing left to claim
        priorities = {b.id: b.priority for b in runnable}
        for batch_id, num in scheduler.fair_claims(runnable, want, self._fair_turn):
            claimed = await asyncio.to_thread(self._claim, batch_id, num, priorities[batch_id])
            for request in claimed:
                self._start(request)
            want -= len(claimed)
            if len(claimed) < num:
                drained.add(batch_id)
        if want <= 0:
            return
        for batch_id in scheduler.claim_order(runnable):
            if batch_id in drained:
                continue
            claimed = await asyncio.to_thread(self._claim, batch_id, want, priorities[batch_id])
            for request in claimed:
                self._start(request)
            want -= len(claimed)
            if want <= 0:
                return

    async def _give_back(self, window: int, policy: scheduler.WindowPolicy) -> None:
        """Take the youngest batch requests back out of the engine (worker/scheduler.py)."""
        num = scheduler.num_to_give_back(
            self.num_in_flight,
            window,
            policy.max_num_seqs,
            preempt=policy.preempt,
        )
        if num <= 0:
            return
        request_ids = list(self._in_flight)[-num:]
        tasks = [self._in_flight[r] for r in request_ids]
        for task in tasks:
            task.cancel()  # aborts the request inside the engine
        await asyncio.gather(*tasks, return_exceptions=True)
        for request_id in request_ids:  # a task cancelled before its first step never ran
            self._in_flight.pop(request_id, None)
        await asyncio.to_thread(self._write, batch_requests.release, self.owner, request_ids)
        self.num_given_back += num

    def _runnable(self) -> list[scheduler.RunnableBatch]:
        """The batches a claim may take from: in progress at the last housekeeping (at
        most HOUSEKEEPING_SECONDS ago, sooner after a kick or a batch step), not expired,
        not busy with a step, not going to Ray. A batch that has ended since then only
        yields an empty claim; its counts only size the claims (`fair_claims`)."""
        now = time.time()
        rows = self._in_progress
        return [
            scheduler.RunnableBatch(
                b.id, b.project, b.created_at, b.expires_at, b.num_open, b.priority
            )
            for b in rows
            if b.expires_at > now
            and not self.batch_steps.is_busy(b.id)
            and not (self.ray is not None and self.ray.wants(b))
        ]

    def _claim(
        self, batch_id: str, limit: int, priority: int
    ) -> list[batch_requests.ClaimedRequest]:
        """Lease up to `limit` requests, which carry their batch's `priority` into the
        engine; those the result cache answers are recorded in the same transaction
        (store/result_cache.py) and only the rest come back to run."""
        only = self.settings.worker.models  # requests carry models' own names, not aliases
        cache = self.settings.cache
        with self.db.write() as conn:
            claimed = batch_requests.claim(
                conn,
                batch_id,
                self.owner,
                limit,
                self.settings.worker.lease_seconds,
                models=None if only is None else [self.registry.canonical(m) for m in only],
                priority=priority,
            )
            if not cache.enabled:
                return claimed
            to_run, num_served = result_cache.serve(conn, claimed, time.time() - cache.ttl_seconds)
        self.num_served_from_cache += num_served
        return to_run

    def _start(self, request: batch_requests.ClaimedRequest) -> None:
        task = asyncio.create_task(self._run_one(request))
        self._in_flight[request.id] = task

    async def _run_one(self, request: batch_requests.ClaimedRequest) -> None:
        max_attempts = self.settings.worker.max_attempts
        try:
            if request.attempts > max_attempts:
                self._pending.append(_gave_up(request, "the worker running it was lost"))
                return
            result = await self._execute(request)
            if isinstance(result, runner.Transient):
                self.num_retries += 1
                log.warning(
                    "request %s (line %d) attempt %d/%d failed: %s",
                    request.id,
                    request.line,
                    request.attempts,
                    max_attempts,
                    result.reason,
                )
                if request.attempts >= max_attempts:
                    self._pending.append(_gave_up(request, result.reason))
                    return
                # Exponential backoff with full jitter before the request is queued again.
                await asyncio.sleep(backoff_seconds(request.attempts))
                await self._until_stored(self._requeue, request.id)
                return
            self._pending.append(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: record it on the line instead of losing the request
            log.exception("request %s failed unexpectedly", request.id)
            self._pending.append(_gave_up(request, f"internal error: {exc!r}"))
        finally:
            self._in_flight.pop(request.id, None)
            if scheduler.claim_size(self._window(self.policy()), self.num_in_flight) > 0:
                self._kick.set()

    async def _execute(
        self, request: batch_requests.ClaimedRequest
    ) -> batch_requests.Outcome | runner.Transient:
        timeout = self.settings.worker.request_timeout_seconds
        if timeout is None:
            return await runner.execute(request, self.engines, self._shared)
        try:
            # Cancelling the run on timeout aborts the request inside the engine.
            return await asyncio.wait_for(
                runner.execute(request, self.engines, self._shared), timeout
            )
        except TimeoutError:
            return runner.Transient(request.id, f"no result within {timeout:g} s (timed out)")

    def _requeue(self, request_id: str) -> None:
        with self.db.write() as conn:
            batch_requests.requeue(conn, request_id)

    async def _until_stored(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        """Run a store write in a thread, waiting out storage faults (store/faults.py)."""
        backoff = faults.Backoff()
        while True:
            try:
                await asyncio.to_thread(fn, *args)
                return
            except faults.STORAGE_ERRORS as exc:
                pause = backoff.failed(time.monotonic())
                log.error(
                    "%s failed: %s; trying again in %.1f s",
                    fn.__name__,
                    faults.describe(exc),
                    pause,
                )
                await asyncio.sleep(pause)

    # --- results -------------------------------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.worker.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Record the buffered results (one transaction); kept for later if it fails."""
        if not self._pending or not self._flush_backoff.can_try(time.monotonic()):
            return
        outcomes, self._pending = self._pending, []
        try:
            num_written = await asyncio.to_thread(self._record, outcomes)
        except faults.STORAGE_ERRORS as exc:
            # Nothing was written (one transaction): keep the results and try again. Their
            # leases stay renewed meanwhile; if this process dies, they expire and run again.
            self._pending[:0] = outcomes
            pause = self._flush_backoff.failed(time.monotonic())
            log.error(
                "could not record %d results: %s; keeping them and trying again in %.1f s",
                len(outcomes),
                faults.describe(exc),
                pause,
            )
            return
        if self._flush_backoff.num_failures:
            log.warning("results are being recorded again (%d written)", num_written)
        self._flush_backoff = faults.Backoff()
        self.num_recorded += num_written

    def _record(self, outcomes: list[batch_requests.Outcome]) -> int:
        with self.db.write() as conn:
            return batch_requests.record(conn, outcomes)

    def abort(self, request_ids: list[str]) -> None:
        """Stop those of these requests that run here (a cancel or an expiry closed them)."""
        for request_id in request_ids:
            task = self._in_flight.get(request_id)
            if task is not None:
                task.cancel()  # aborts the request inside the engine

    # --- housekeeping ----------------------------------------------------------------

    async def _housekeep(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_SECONDS:
            return
        self._last_housekeeping = now
        lease = self.settings.worker.lease_seconds
        if now - self._last_renew > lease / 3:
            self._last_renew = now
            await asyncio.to_thread(self._write, batch_requests.renew, self.owner, lease)
        if now - self._last_reclaim > lease / 4:
            self._last_reclaim = now
            num = await asyncio.to_thread(self._write, batch_requests.reclaim_expired)
            if num:
                log.warning("reclaimed %d requests whose worker lost its lease", num)
        active = await asyncio.to_thread(self._active)
        self._in_progress = [b for b in active if b.status == BatchStatus.IN_PROGRESS]
        await self.passthrough.step(active)
        self.batch_steps.advance(active, now, time.time())

    def _step_done(self) -> None:
        self._last_housekeeping = 0.0  # the batch's next step may start at once
        self._kick.set()

    def _active(self) -> list[batches.BatchRecord]:
        with self.db.read() as conn:
            return batches.with_status(conn, *batches.ACTIVE)

    def _write(self, fn, *args):  # type: ignore[no-untyped-def]
        with self.db.write() as conn:
            return fn(conn, *args)

    # --- shutdown --------------------------------------------------------------------

    async def _drain(self) -> None:
        """Stop: let in-flight requests finish briefly, then give the rest back unrun."""
        if self.ray is not None:
            self.ray.stop()
        if self._in_flight:
            log.info("waiting for %d in-flight requests", len(self._in_flight))
            await asyncio.wait(
                list(self._in_flight.values()), timeout=self.settings.worker.drain_seconds
            )
        leftover = list(self._in_flight.values())
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        await self.passthrough.stop()
        await self.batch_steps.stop()
        self._flush_backoff = faults.Backoff()  # one last try, whatever the pause
        await self.flush()
        try:
            num = await asyncio.to_thread(self._write, batch_requests.release, self.owner)
        except faults.STORAGE_ERRORS as exc:
            log.error(
                "could not give back unfinished requests: %s; their leases expire in %g s "
                "and another worker runs them",
                faults.describe(exc),
                self.settings.worker.lease_seconds,
            )
            return
        if num:
            log.info("released %d unfinished requests back to the queue", num)


def backoff_seconds(attempt: int, *, cap: float = 30.0) -> float:
    """The pause before try `attempt + 1`: exponential (0.5 s x 2^attempt) with full jitter,
    so requests that failed together (an engine restart) do not come back together."""
    return random.uniform(0, min(cap, 0.5 * 2**attempt))


def _gave_up(request: batch_requests.ClaimedRequest, reason: str) -> batch_requests.Outcome:
    message = (
        f"The request failed after {request.attempts} attempts; the last failure was: {reason}"
    )
    return batch_requests.Outcome(
        request.id,
        request.batch_id,
        RequestStatus.ERRORED,
        error_json=json.dumps({"code": "engine_error", "message": message}),
    )
