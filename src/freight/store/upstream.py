"""Upstream batches: requests a worker sends to a provider's Batch API, and their state.

A request whose model runs through an upstream Batch API is queued with `upstream` set
to that model (worker/ingest.py), so ordinary claims pass it by. The passthrough runner
(upstream/passthrough.py) packs such requests into upstream batches: `pack` leases them
to the worker, exactly as a claim does, and ties them to a new `upstream_batches` row in
the same transaction. The worker's heartbeat renews those leases like any other, so an
upstream batch belongs to whichever worker holds its requests. When a worker stops (or
dies and its leases run out), its requests go back to the queue still tied to their
upstream batch, and the next worker `adopt`s that batch and polls it: the provider's
batch is created once, not once per worker.

Upstream batch statuses: pending (packed; not yet created upstream) → submitted (the
provider's id recorded) → ended (results imported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight import ids
from freight.store.batch_requests import CLAIMED_COLUMNS, ClaimedRequest
from freight.store.schema import requests, upstream_batches
from freight.store.statuses import RequestStatus

PENDING = "pending"
SUBMITTED = "submitted"
ENDED = "ended"


@dataclass(frozen=True)
class UpstreamBatch:
    id: str
    batch_id: str
    model: str
    style: str
    status: str
    upstream_id: str | None
    upstream_status: str | None
    num_requests: int
    created_at: float
    submitted_at: float | None
    ended_at: float | None
    detail: str | None


def _record(row: Any) -> UpstreamBatch:
    return UpstreamBatch(**row._mapping)


@dataclass(frozen=True)
class Waiting:
    """Queued requests of one batch for one upstream model, and the batch they are tied
    to (None: not yet packed into one)."""

    batch_id: str
    model: str
    upstream_batch_id: str | None


def waiting(conn: sa.Connection, models: list[str]) -> list[Waiting]:
    """Where queued requests for the upstream `models` are: what the runner should pack
    or adopt.

    Asked per model (`upstream IN ...`), so the (upstream, status, ...) index answers it:
    `upstream IS NOT NULL` led SQLite to walk every queued request of every batch, each
    poll, which made a 1,000,000-request local batch twice as slow.
    """
    if not models:
        return []
    rows = conn.execute(
        sa.select(requests.c.batch_id, requests.c.upstream, requests.c.upstream_batch_id)
        .where(requests.c.upstream.in_(models), requests.c.status == RequestStatus.QUEUED)
        .distinct()
    ).all()
    return [Waiting(*row) for row in rows]


def pack(
    conn: sa.Connection,
    batch_id: str,
    model: str,
    style: str,
    owner: str,
    lease_seconds: float,
    *,
    max_requests: int,
    max_bytes: int,
    now: float | None = None,
) -> tuple[UpstreamBatch, list[ClaimedRequest]] | None:
    """Lease the next queued requests of `batch_id` for `model` (in line order, within
    both limits) into a new pending upstream batch. None if none are queued."""
    query = (
        sa.select(*CLAIMED_COLUMNS)
        .where(
            requests.c.batch_id == batch_id,
            requests.c.upstream == model,
            requests.c.status == RequestStatus.QUEUED,
            requests.c.upstream_batch_id.is_(None),
        )
        .order_by(requests.c.line)
        .limit(max_requests)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    chosen: list[Any] = []
    num_bytes = 0
    for row in rows:
        num_bytes += len(row.body) + 200  # the line's envelope around the body
        if chosen and num_bytes > max_bytes:
            break
        chosen.append(row)
    if not chosen:
        return None
    now = time.time() if now is None else now
    record = UpstreamBatch(
        ids.new_id("ubatch_"),
        batch_id,
        model,
        style,
        PENDING,
        None,
        None,
        len(chosen),
        now,
        None,
        None,
        None,
    )
    conn.execute(upstream_batches.insert().values(**record.__dict__))
    conn.execute(
        requests.update()
        .where(requests.c.id.in_([r.id for r in chosen]))  # still queued: see requests.claim
        .values(
            status=RequestStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + lease_seconds,
            attempts=requests.c.attempts + 1,
            upstream_batch_id=record.id,
        )
    )
    claimed = [
        ClaimedRequest(r.id, r.batch_id, r.line, r.custom_id, r.url, r.body, r.attempts + 1)
        for r in chosen
    ]
    return record, claimed


def adopt(
    conn: sa.Connection,
    upstream_batch_id: str,
    owner: str,
    lease_seconds: float,
    *,
    now: float | None = None,
) -> UpstreamBatch | None:
    """Lease the queued requests of an upstream batch another worker gave back.

    None if there were none left to lease (another worker adopted it first)."""
    result = conn.execute(
        requests.update()
        .where(
            requests.c.upstream_batch_id == upstream_batch_id,
            requests.c.status == RequestStatus.QUEUED,
        )
        .values(
            status=RequestStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=(time.time() if now is None else now) + lease_seconds,
            attempts=requests.c.attempts + 1,
        )
    )
    return get(conn, upstream_batch_id) if result.rowcount else None


def requests_of(conn: sa.Connection, upstream_batch_id: str) -> list[ClaimedRequest]:
    """The requests an upstream batch carries (all of them, whatever their status)."""
    rows = conn.execute(
        sa.select(*CLAIMED_COLUMNS)
        .where(requests.c.upstream_batch_id == upstream_batch_id)
        .order_by(requests.c.line)
    ).all()
    return [ClaimedRequest(*row) for row in rows]


def num_running(conn: sa.Connection, upstream_batch_id: str, owner: str) -> int:
    """How many of its requests `owner` still holds (0: another worker or the end took them)."""
    query = sa.select(sa.func.count()).where(
        requests.c.upstream_batch_id == upstream_batch_id,
        requests.c.status == RequestStatus.RUNNING,
        requests.c.lease_owner == owner,
    )
    return int(conn.execute(query).scalar_one())


def get(conn: sa.Connection, upstream_batch_id: str) -> UpstreamBatch | None:
    row = conn.execute(
        sa.select(upstream_batches).where(upstream_batches.c.id == upstream_batch_id)
    ).first()
    return None if row is None else _record(row)


def for_batch(conn: sa.Connection, batch_id: str) -> list[UpstreamBatch]:
    rows = conn.execute(
        sa.select(upstream_batches)
        .where(upstream_batches.c.batch_id == batch_id)
        .order_by(upstream_batches.c.created_at, upstream_batches.c.id)
    ).all()
    return [_record(row) for row in rows]


def update(conn: sa.Connection, upstream_batch_id: str, **values: Any) -> None:
    conn.execute(
        upstream_batches.update().where(upstream_batches.c.id == upstream_batch_id).values(**values)
    )


def submitted(
    conn: sa.Connection,
    upstream_batch_id: str,
    upstream_id: str,
    status: str,
    *,
    now: float | None = None,
) -> None:
    update(
        conn,
        upstream_batch_id,
        status=SUBMITTED,
        upstream_id=upstream_id,
        upstream_status=status,
        submitted_at=time.time() if now is None else now,
    )


def ended(
    conn: sa.Connection,
    upstream_batch_id: str,
    upstream_status: str,
    detail: str,
    *,
    now: float | None = None,
) -> None:
    update(
        conn,
        upstream_batch_id,
        status=ENDED,
        upstream_status=upstream_status,
        ended_at=time.time() if now is None else now,
        detail=detail,
    )
