"""The batches aggregate. Every status change goes through `transition`.

One lifecycle serves both APIs (the OpenAI statuses below); the Anthropic view is
derived from it in the protocol layer.

    validating ─► in_progress ─► finalizing ─► completed
        │              ├──────────────────────► expired      (past expires_at)
        ├─► failed     └─► cancelling ─► cancelled
        └──────────────────► cancelling

The background steps the worker runs on a batch (ingest, finalize, cancel, expire) have
a bounded number of attempts, counted here durably as events that change no status
(`begin_attempt`): an attempt is recorded when it starts, so one that kills its process
counts too, and the worker ends the batch once a step has used them all
(worker/steps.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from freight.errors import Conflict, IllegalTransition, NotFound
from freight.store import webhook_store
from freight.store.schema import batch_events, batches, requests
from freight.store.statuses import BatchStatus

ALLOWED: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.VALIDATING: frozenset(
        {BatchStatus.IN_PROGRESS, BatchStatus.FAILED, BatchStatus.CANCELLING}
    ),
    BatchStatus.IN_PROGRESS: frozenset(
        {BatchStatus.FINALIZING, BatchStatus.CANCELLING, BatchStatus.EXPIRED}
    ),
    BatchStatus.FINALIZING: frozenset({BatchStatus.COMPLETED, BatchStatus.EXPIRED}),
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
}
TERMINAL = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
# Statuses in which requests may still run.
ACTIVE = frozenset(
    {
        BatchStatus.VALIDATING,
        BatchStatus.IN_PROGRESS,
        BatchStatus.FINALIZING,
        BatchStatus.CANCELLING,
    }
)


@dataclass(frozen=True)
class BatchRecord:
    id: str
    project: str
    api: str
    endpoint: str
    input_file_id: str | None
    completion_window: str
    status: BatchStatus
    model: str | None
    metadata_json: str | None
    errors_json: str | None
    output_file_id: str | None
    error_file_id: str | None
    output_expires_after: int | None
    created_at: int
    created_ns: int
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    num_total: int
    num_succeeded: int
    num_errored: int
    num_cancelled: int
    num_expired: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    expected_completion_at: int | None = None  # an estimate (service/completion.py)
    priority: int = 0  # higher runs first (worker/scheduler.py)
    cache: bool = True  # its requests use the result cache (store/result_cache.py)
    num_from_cache: int = 0  # of num_succeeded, those the result cache answered

    @property
    def num_run_succeeded(self) -> int:
        """Succeeded requests the engine ran (their tokens are in the token totals)."""
        return self.num_succeeded - self.num_from_cache

    @property
    def num_finished(self) -> int:
        return self.num_succeeded + self.num_errored + self.num_cancelled + self.num_expired

    @property
    def num_open(self) -> int:
        """Requests not yet finished (queued or running)."""
        return self.num_total - self.num_finished

    @property
    def is_at_risk(self) -> bool:
        """Running, and expected to end after its deadline at the measured rate (the
        expected completion of a read: service/completion.py)."""
        expected = self.expected_completion_at
        return (
            self.status == BatchStatus.IN_PROGRESS
            and expected is not None
            and expected > self.expires_at
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def metadata(self) -> dict[str, str] | None:
        return json.loads(self.metadata_json) if self.metadata_json else None

    @property
    def errors(self) -> list[dict[str, Any]] | None:
        return json.loads(self.errors_json) if self.errors_json else None

    @property
    def ended_at(self) -> int | None:
        return self.completed_at or self.failed_at or self.expired_at or self.cancelled_at


_COLUMNS = [f.name for f in fields(BatchRecord)]


def _record(row: Any) -> BatchRecord:
    values = {name: row[name] for name in _COLUMNS}
    values["status"] = BatchStatus(values["status"])
    return BatchRecord(**values)


def insert(conn: sa.Connection, **values: Any) -> BatchRecord:
    values.setdefault("status", BatchStatus.VALIDATING)
    values.setdefault("created_ns", time.time_ns())
    conn.execute(batches.insert().values(**values))
    _event(conn, values["id"], None, values["status"], "created")
    return get(conn, values["id"])


def get(
    conn: sa.Connection, batch_id: str, project: str | None = None, api: str | None = None
) -> BatchRecord:
    """The batch, if it exists (in `project`, and of `api`: each API sees only its own)."""
    query = batches.select().where(batches.c.id == batch_id)
    if project is not None:
        query = query.where(batches.c.project == project)
    if api is not None:
        query = query.where(batches.c.api == api)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"No such batch: {batch_id}", param="batch_id")
    return _record(row)


def list_page(
    conn: sa.Connection,
    *,
    api: str | None,
    project: str | None,
    after: str | None = None,
    before: str | None = None,
    limit: int,
) -> tuple[list[BatchRecord], bool]:
    """Newest first. `after`: the page after this id (older); `before`: newer than this id.

    `api`: only that API's batches; None: every batch (the dashboard).
    """
    query = batches.select()
    if api is not None:
        query = query.where(batches.c.api == api)
    if project is not None:
        query = query.where(batches.c.project == project)
    key = sa.tuple_(batches.c.created_ns, batches.c.id)
    if after is not None:
        cursor = get(conn, after, project)
        query = query.where(key < sa.tuple_(sa.literal(cursor.created_ns), sa.literal(cursor.id)))
    if before is not None:
        cursor = get(conn, before, project)
        query = query.where(key > sa.tuple_(sa.literal(cursor.created_ns), sa.literal(cursor.id)))
        # the page nearest the cursor, then flipped back to newest first
        query = query.order_by(batches.c.created_ns, batches.c.id).limit(limit + 1)
        rows = [_record(r) for r in conn.execute(query).mappings()]
        return list(reversed(rows[:limit])), len(rows) > limit
    query = query.order_by(batches.c.created_ns.desc(), batches.c.id.desc()).limit(limit + 1)
    rows = [_record(r) for r in conn.execute(query).mappings()]
    return rows[:limit], len(rows) > limit


def lock(conn: sa.Connection, batch_id: str) -> BatchRecord:
    """The batch, its row locked until the transaction ends (on PostgreSQL).

    For decisions that must not race another worker's: whoever locks second sees the
    first one's outcome. SQLite's write transaction already excludes other writers.
    """
    query = batches.select().where(batches.c.id == batch_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"No such batch: {batch_id}", param="batch_id")
    return _record(row)


def with_status(conn: sa.Connection, *statuses: BatchStatus) -> list[BatchRecord]:
    # One status compares directly: an IN list is expanded again on every execution.
    (first, *more) = statuses
    match = batches.c.status.in_(statuses) if more else batches.c.status == first
    query = batches.select().where(match).order_by(batches.c.expires_at)
    return [_record(r) for r in conn.execute(query).mappings()]


def transition(
    conn: sa.Connection,
    batch_id: str,
    to_status: BatchStatus,
    *,
    detail: str | None = None,
    now: float | None = None,
    **values: Any,
) -> BatchRecord:
    """Move a batch to `to_status` if the lifecycle allows it from its current status.

    Sets `<to_status>_at`, writes `values` in the same UPDATE, and records an event.
    A terminal status also queues its `batch.<status>` webhooks in this transaction.
    Raises IllegalTransition otherwise (including when another process won the race).
    """
    current = get(conn, batch_id)
    if to_status not in ALLOWED.get(current.status, frozenset()):
        raise IllegalTransition(f"batch {batch_id} cannot go from {current.status} to {to_status}")
    now = time.time() if now is None else now
    stamp = {f"{to_status}_at": int(now)}
    result = conn.execute(
        batches.update()
        .where(batches.c.id == batch_id, batches.c.status == current.status)
        .values(status=to_status, **stamp, **values)
    )
    if result.rowcount != 1:
        raise IllegalTransition(f"batch {batch_id} changed status concurrently")
    _event(conn, batch_id, current.status, to_status, detail, now)
    if to_status in TERMINAL:
        webhook_store.enqueue(
            conn,
            project=current.project,
            batch_id=batch_id,
            event_type=f"batch.{to_status}",
            now=now,
        )
    return get(conn, batch_id)


def request_cancel(
    conn: sa.Connection, batch_id: str, project: str | None, api: str | None = None
) -> BatchRecord:
    """The API's cancel: idempotent while cancelling, a 409 once the batch has ended."""
    batch = get(conn, batch_id, project, api)
    if batch.status == BatchStatus.CANCELLING:
        return batch
    if batch.status not in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
        raise Conflict(
            f"Cannot cancel batch {batch_id}: it is already {batch.status}.",
            param="batch_id",
            code="batch_not_cancellable",
        )
    return transition(conn, batch_id, BatchStatus.CANCELLING, detail="cancel requested")


def add_counts(conn: sa.Connection, batch_id: str, **deltas: int) -> None:
    """Add to counters (num_*, *_tokens) atomically, without reading them first."""
    values = {name: batches.c[name] + delta for name, delta in deltas.items() if delta}
    if values:
        conn.execute(batches.update().where(batches.c.id == batch_id).values(**values))


def set_values(conn: sa.Connection, batch_id: str, **values: Any) -> None:
    """Update non-status columns (model, totals at ingest). Status goes through transition."""
    if "status" in values:
        raise IllegalTransition("status changes go through batches.transition")
    conn.execute(batches.update().where(batches.c.id == batch_id).values(**values))


def delete(conn: sa.Connection, batch_id: str) -> None:
    conn.execute(batches.delete().where(batches.c.id == batch_id))
    conn.execute(batch_events.delete().where(batch_events.c.batch_id == batch_id))


def delete_ended(
    conn: sa.Connection, batch_id: str, project: str | None, api: str | None = None
) -> BatchRecord:
    """Delete a batch with its requests and events; a 409 unless it has ended."""
    batch = get(conn, batch_id, project, api)
    if not batch.is_terminal:
        raise Conflict(
            f"Batch {batch_id} is still processing; a batch can be deleted once processing "
            "has ended. Cancel it first to end it sooner.",
            param="batch_id",
            code="batch_not_ended",
        )
    conn.execute(requests.delete().where(requests.c.batch_id == batch_id))
    delete(conn, batch_id)
    return batch


def events(conn: sa.Connection, batch_id: str) -> list[dict[str, Any]]:
    query = (
        batch_events.select().where(batch_events.c.batch_id == batch_id).order_by(batch_events.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _event(
    conn: sa.Connection,
    batch_id: str,
    from_status: BatchStatus | None,
    to_status: BatchStatus,
    detail: str | None,
    now: float | None = None,
) -> int:
    result = conn.execute(
        batch_events.insert().values(
            batch_id=batch_id,
            from_status=from_status,
            to_status=to_status,
            at=time.time() if now is None else now,
            detail=detail,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]  # set by any insert


# --- attempts of background steps --------------------------------------------------------
#
# An attempt is an event whose from_status equals its to_status (no transition has one)
# and whose detail starts with "<step> attempt". It is written when the attempt starts,
# rewritten with the reason when the attempt fails, and deleted when the attempt succeeds
# or was not the batch's fault (a storage fault, the worker stopping): what is left counts.

MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class StepAttempts:
    """The attempts of one step of one batch that count so far."""

    num_failed: int  # ended in an error, which they record
    num_died: int  # never ended: their worker died during them
    last_failure: str | None  # why the latest one failed, if one did

    @property
    def num_attempts(self) -> int:
        return self.num_failed + self.num_died


_FAILED = ": failed: "


def _attempt_prefix(step: str) -> str:
    if not step.isalpha():  # the name goes into a LIKE pattern: no wildcards
        raise ValueError(f"a step name is letters only, not {step!r}")
    return f"{step} attempt"


def step_attempts(conn: sa.Connection, batch_id: str, step: str) -> StepAttempts:
    """The attempts of `step` that count against the batch, and why the latest failed."""
    query = (
        sa.select(batch_events.c.detail)
        .where(
            batch_events.c.batch_id == batch_id,
            batch_events.c.from_status == batch_events.c.to_status,
            batch_events.c.detail.like(f"{_attempt_prefix(step)}%"),
        )
        .order_by(batch_events.c.id)
    )
    details = list(conn.execute(query).scalars())
    failures = [d.split(_FAILED, 1)[1] for d in details if _FAILED in d]
    last = None
    if details:
        last = failures[-1] if _FAILED in details[-1] else "its worker died during it"
    return StepAttempts(len(failures), len(details) - len(failures), last)


def begin_attempt(conn: sa.Connection, batch_id: str, step: str) -> int:
    """Record that an attempt of `step` starts now; returns its event id.

    The attempt counts from here on, unless `forget_attempt` takes it back.
    """
    current = get(conn, batch_id)
    number = step_attempts(conn, batch_id, step).num_attempts + 1
    detail = f"{_attempt_prefix(step)} {number}"
    return _event(conn, batch_id, current.status, current.status, detail)


def attempt_failed(conn: sa.Connection, event_id: int, reason: str) -> None:
    """Say why the attempt that `event_id` records failed (it keeps counting)."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    detail = batch_events.c.detail + f"{_FAILED}{reason}"
    conn.execute(batch_events.update().where(batch_events.c.id == event_id).values(detail=detail))


def forget_attempt(conn: sa.Connection, event_id: int) -> None:
    """Take back an attempt that succeeded, or that failed through no fault of the batch."""
    conn.execute(batch_events.delete().where(batch_events.c.id == event_id))
