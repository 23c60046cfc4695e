"""Provider batch passthrough: a model's batch requests run in an upstream Batch API.

A model with `engine = "openai-batch"` or `"anthropic-batch"` is not run here. Its
requests are queued like any other, marked with the model (`batch_requests.upstream`), so the
worker's ordinary claims pass them by. Each housekeeping round, `Passthrough.step` packs
the queued ones of every running batch into upstream batches, within the upstream's
limits on requests and bytes per batch (store/upstream.py), and starts one task per
upstream batch: upload and create it, poll it with doubling waits, and when it ends
import its results into the store under the requests' own ids, which carry the caller's
custom_ids. The user sees one Freight batch; its lines say what the provider did with
each request (provider_batches.py maps expiry, cancellation and failures).

The requests stay leased to this worker while their upstream batch runs, and the
worker's heartbeat renews the leases like any other. A worker that stops gives them
back still tied to their upstream batch, and the next one adopts and polls that batch
instead of creating another. When the Freight batch is cancelled or expires, the
upstream batches are cancelled too, and what the provider finished first is kept.

Following an upstream batch has bounded attempts, as running a request has: each pack
or adoption counts a try on its requests, and an unexpected failure gives them back to
be adopted again after a pause, until `[worker] max_attempts`; then each gets an error
line saying why, and the upstream batch is cancelled (worker/steps.py says the same of
a batch's own steps). An upstream that is down is waited for, not counted: its batch
ends at the latest when the Freight batch expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable

from freight.config import BatchUpstream, Settings
from freight.engines.registry import ModelSpec, Registry
from freight.protocol import endpoints
from freight.store import batch_requests, batches, upstream
from freight.store.db import Database
from freight.store.statuses import BatchStatus, RequestStatus
from freight.upstream import provider_batches
from freight.upstream.provider_batches import ProviderBatches, UpstreamRefused, UpstreamUnavailable

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 120.0  # how long an ended Freight batch waits for upstream cancels
MAX_REFUSALS = 5  # consecutive refused polls before the upstream batch is given up


def serving_problem(registry: Registry, model: str, url: str, *, in_batch: bool) -> str | None:
    """Why `model` cannot serve `url` (an embeddings model asked to chat, ...), if it
    cannot: the one answer for batch lines (the worker's ingest, `freight run`) and
    real-time requests. In a batch, a passthrough model serves what its upstream Batch
    API does; otherwise a model serves its task's endpoints."""
    spec = registry.get(model)
    if in_batch and spec.batch_style is not None:
        return url_problem(spec, url)
    return endpoints.model_problem(url, model, spec.task)


def url_problem(spec: ModelSpec, url: str) -> str | None:
    """Why a passthrough model cannot carry requests to `url`, if it cannot."""
    style = spec.batch_style or "openai"
    supported = provider_batches.urls_for(style)
    if url in supported:
        return None
    return (
        f"The model '{spec.name}' runs through an upstream {style.title()}-style Batch API, "
        f"which serves {', '.join(supported)}, not {url}."
    )


class Passthrough:
    """Sends the requests of passthrough models to their upstream Batch APIs."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: Registry,
        owner: str,
        *,
        backoff: Callable[[int], float],
    ) -> None:
        self.settings = settings
        self.backoff = backoff  # the pause after a request's n-th try failed
        self.db = db
        self.registry = registry
        self.owner = owner
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by upstream batch id
        self._clients: dict[str, ProviderBatches] = {}  # by model
        self._adopt_after: dict[str, float] = {}  # by upstream batch id, after a failure
        self.num_submitted = 0
        self.num_failures = 0

    def route(self, model: str | None) -> str | None:
        """The ingest route: the model's name if it runs upstream, else None."""
        if model is None or not self.registry.has(model):
            return None
        return model if self.registry.get(model).batch_style is not None else None

    def _settings(self, model: str) -> BatchUpstream:
        """The `[models.upstream]` of a model that runs through an upstream Batch API."""
        settings = self.registry.get(model).batch_upstream
        assert settings is not None  # only such models' requests are routed here
        return settings

    def _client(self, model: str) -> ProviderBatches:
        client = self._clients.get(model)
        if client is None:
            settings = self._settings(model)
            client = provider_batches.client_for(settings, settings.model or model)
            self._clients[model] = client
        return client

    # --- housekeeping ------------------------------------------------------------------

    async def step(self, active: list[batches.BatchRecord]) -> None:
        """Pack the newly queued upstream requests of running batches; adopt given-back ones."""
        try:
            await self._step(active)
        except Exception:  # the store is busy or down: the next round tries again
            log.exception("passthrough: packing upstream batches failed; will retry")

    async def _step(self, active: list[batches.BatchRecord]) -> None:
        now = time.time()
        running = {
            b.id for b in active if b.status == BatchStatus.IN_PROGRESS and b.expires_at > now
        }
        if not running:
            return
        models = [s.name for s in self.registry.specs() if s.batch_style is not None]
        if not models:
            return
        waiting = await asyncio.to_thread(self._read, upstream.waiting, models)
        for entry in waiting:
            if entry.batch_id not in running:
                continue
            if entry.upstream_batch_id is None:
                packed = await asyncio.to_thread(self._pack_all, entry.batch_id, entry.model)
                for record in packed:
                    self._start(record)
            elif entry.upstream_batch_id not in self._tasks and self._may_adopt(
                entry.upstream_batch_id
            ):
                adopted = await asyncio.to_thread(self._adopt, entry.upstream_batch_id)
                if adopted is not None:
                    log.info("batch %s: adopted upstream batch %s", adopted.batch_id, adopted.id)
                    self._start(adopted)

    def _may_adopt(self, upstream_batch_id: str) -> bool:
        """No pause after a failure holds the upstream batch back (here; others may adopt)."""
        after = self._adopt_after.get(upstream_batch_id)
        if after is None or time.monotonic() >= after:
            self._adopt_after.pop(upstream_batch_id, None)
            return True
        return False

    def _read(self, fn, *args):  # type: ignore[no-untyped-def]
        with self.db.read() as conn:
            return fn(conn, *args)

    def _pack_all(self, batch_id: str, model: str) -> list[upstream.UpstreamBatch]:
        spec = self.registry.get(model)
        settings, style = spec.batch_upstream, spec.batch_style
        assert settings is not None and style is not None  # config checks
        max_requests = provider_batches.max_requests(settings)
        packed_all: list[upstream.UpstreamBatch] = []
        while True:
            with self.db.write() as conn:
                packed = upstream.pack(
                    conn,
                    batch_id,
                    model,
                    style,
                    self.owner,
                    self.settings.worker.lease_seconds,
                    max_requests=max_requests,
                    max_bytes=settings.max_batch_bytes,
                )
            if packed is None:
                return packed_all
            record, claimed = packed
            log.info(
                "batch %s: %d requests for %s packed into upstream batch %s",
                batch_id,
                len(claimed),
                model,
                record.id,
            )
            packed_all.append(record)

    def _adopt(self, upstream_batch_id: str) -> upstream.UpstreamBatch | None:
        with self.db.write() as conn:
            return upstream.adopt(
                conn, upstream_batch_id, self.owner, self.settings.worker.lease_seconds
            )

    def _start(self, record: upstream.UpstreamBatch) -> None:
        self._tasks[record.id] = asyncio.create_task(self._run(record))

    # --- one upstream batch ------------------------------------------------------------

    async def _run(self, record: upstream.UpstreamBatch) -> None:
        try:
            await self._follow(record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, or input it cannot handle: a counted try
            log.exception("upstream batch %s failed unexpectedly", record.id)
            self.num_failures += 1
            try:
                await self._after_failure(record, f"{type(exc).__name__}: {exc}")
            except Exception:  # the store is down: the leases run out and it is adopted
                log.exception("upstream batch %s: could not give its requests back", record.id)
        finally:
            self._tasks.pop(record.id, None)

    async def _after_failure(self, record: upstream.UpstreamBatch, reason: str) -> None:
        """Give the requests back to be adopted again, or, out of tries, end them."""
        carried = await asyncio.to_thread(self._read, upstream.requests_of, record.id)
        current = await asyncio.to_thread(self._read, upstream.get, record.id)
        max_attempts = self.settings.worker.max_attempts
        attempts = max((r.attempts for r in carried), default=max_attempts)
        if attempts < max_attempts:
            await asyncio.to_thread(
                self._write, batch_requests.requeue_many, self.owner, [r.id for r in carried]
            )
            pause = self.backoff(attempts)
            self._adopt_after[record.id] = time.monotonic() + pause
            log.warning(
                "upstream batch %s: try %d of %d failed (%s); adopted again in %.1f s",
                record.id,
                attempts,
                max_attempts,
                reason,
                pause,
            )
            return
        message = (
            f"The request failed after {attempts} attempts at the upstream Batch API; "
            f"the last failure was: {reason}"
        )
        error = json.dumps({"code": "upstream_failed", "message": message})
        outcomes = [
            batch_requests.Outcome(r.id, r.batch_id, RequestStatus.ERRORED, error_json=error)
            for r in carried
        ]
        await asyncio.to_thread(self._import, record, outcomes, "failed")
        if current is not None and current.upstream_id is not None:  # stop paying for it
            with contextlib.suppress(Exception):
                await self._client(record.model).cancel(current.upstream_id)

    async def _follow(self, record: upstream.UpstreamBatch) -> None:
        """Submit (if not yet), poll until the provider ends it, import its results."""
        client = self._client(record.model)
        settings = self._settings(record.model)
        carried = await asyncio.to_thread(self._read, upstream.requests_of, record.id)
        delay = settings.poll_seconds
        num_refused = 0
        while True:
            try:
                if record.upstream_id is None:
                    created, status = await client.submit(record.id, carried)
                    await asyncio.to_thread(
                        self._write, upstream.submitted, record.id, created, status
                    )
                    record = dataclasses.replace(
                        record, status=upstream.SUBMITTED, upstream_id=created
                    )
                    self.num_submitted += 1
                    log.info(
                        "upstream batch %s created as %s (%d requests)",
                        record.id,
                        created,
                        len(carried),
                    )
                upstream_id = record.upstream_id
                assert upstream_id is not None
                state = await client.state(upstream_id)
                if state.status != record.upstream_status:
                    record = dataclasses.replace(record, upstream_status=state.status)
                    await asyncio.to_thread(
                        self._write, upstream.update, record.id, upstream_status=state.status
                    )
                if state.is_ended:
                    outcomes = await client.results(upstream_id, state, carried)
                    await asyncio.to_thread(self._import, record, outcomes, state.status)
                    return
                num_refused = 0
            except UpstreamUnavailable as exc:
                log.warning("upstream batch %s: %s; trying again in %g s", record.id, exc, delay)
            except UpstreamRefused as exc:
                num_refused += 1
                if record.upstream_id is None or num_refused >= MAX_REFUSALS:
                    outcomes = [_refused(r, exc.message) for r in carried]
                    await asyncio.to_thread(self._import, record, outcomes, "refused")
                    return
                log.warning("upstream batch %s: %s; trying again in %g s", record.id, exc, delay)
            held = await asyncio.to_thread(self._read, upstream.num_running, record.id, self.owner)
            if held == 0:
                return  # the Freight batch ended early (end_batch), or another worker has it
            await asyncio.sleep(delay)
            delay = min(2 * delay, settings.max_poll_seconds)

    def _write(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.db.write() as conn:
            return fn(conn, *args, **kwargs)

    def _import(
        self, record: upstream.UpstreamBatch, outcomes: list[batch_requests.Outcome], status: str
    ) -> int:
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        with self.db.write() as conn:
            num = batch_requests.record(conn, outcomes)
            upstream.ended(conn, record.id, status, detail)
        log.info("upstream batch %s ended %s: %s", record.id, status, detail)
        return num

    # --- the Freight batch ends early --------------------------------------------------

    async def end_batch(self, batch_id: str) -> None:
        """Cancel the batch's upstream batches and keep what they finished first.

        Called before the worker closes the batch's open requests (cancelled/expired):
        results the provider finished are recorded, the rest are left for that close.
        """
        live = [
            r
            for r in await asyncio.to_thread(self._read, upstream.for_batch, batch_id)
            if r.status != upstream.ENDED
        ]
        for record in live:
            task = self._tasks.pop(record.id, None)
            if task is not None:
                task.cancel()
            if record.upstream_id is None:
                continue
            try:
                await self._client(record.model).cancel(record.upstream_id)
                log.info("upstream batch %s (%s) cancelled", record.id, record.upstream_id)
            except (UpstreamUnavailable, UpstreamRefused) as exc:
                log.warning("upstream batch %s: could not cancel it: %s", record.id, exc)
        await asyncio.gather(*(self._keep_finished(r) for r in live))

    async def _keep_finished(self, record: upstream.UpstreamBatch) -> None:
        if record.upstream_id is None:
            await asyncio.to_thread(self._import, record, [], "never submitted")
            return
        client = self._client(record.model)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        delay = min(self._settings(record.model).poll_seconds, 1.0)
        while True:
            try:
                state = await client.state(record.upstream_id)
                if state.is_ended:
                    carried = await asyncio.to_thread(self._read, upstream.requests_of, record.id)
                    outcomes = await client.results(record.upstream_id, state, carried)
                    finished = [
                        o
                        for o in outcomes
                        if o.status in (RequestStatus.SUCCEEDED, RequestStatus.ERRORED)
                    ]
                    await asyncio.to_thread(self._import, record, finished, state.status)
                    return
            except (UpstreamUnavailable, UpstreamRefused) as exc:
                log.warning("upstream batch %s: %s", record.id, exc)
            if time.monotonic() + delay > deadline:
                await asyncio.to_thread(self._import, record, [], "abandoned")
                return
            await asyncio.sleep(delay)
            delay = min(2 * delay, 10.0)

    async def stop(self) -> None:
        """Stop following upstream batches (the worker gives their requests back)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


def _refused(request: batch_requests.ClaimedRequest, message: str) -> batch_requests.Outcome:
    error = {"code": "upstream_refused", "message": f"The upstream Batch API refused it: {message}"}
    return batch_requests.Outcome(
        request.id,
        request.batch_id,
        RequestStatus.ERRORED,
        error_json=json.dumps(error, separators=(",", ":")),
    )
