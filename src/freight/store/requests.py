"""The request queue: one row per input line, claimed by workers under a lease.

Request statuses: queued → running → succeeded | errored, and from queued or running
to cancelled | expired when the batch ends early. A result is recorded only while the
row is still `running`, so a request whose lease was lost and re-run elsewhere is
recorded exactly once, by whichever attempt finished first.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight.store import batches
from freight.store.schema import requests

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
ERRORED = "errored"
CANCELLED = "cancelled"
EXPIRED = "expired"
OPEN = (QUEUED, RUNNING)
_COUNTER = {
    SUCCEEDED: "num_succeeded",
    ERRORED: "num_errored",
    CANCELLED: "num_cancelled",
    EXPIRED: "num_expired",
}


@dataclass(frozen=True)
class ClaimedRequest:
    id: str
    batch_id: str
    line: int
    custom_id: str
    url: str
    body: str
    attempts: int
    dedup_key: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A finished request, ready to record."""

    request_id: str
    batch_id: str
    status: str  # SUCCEEDED or ERRORED
    status_code: int | None = None
    response_json: str | None = None
    error_json: str | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


def insert_many(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert request rows (all with the same keys) in one executemany.

    The statement is compiled once and the rows go to the driver as plain tuples:
    SQLAlchemy's per-row parameter processing would cost more than SQLite's insert.
    """
    if not rows:
        return
    compiled = requests.insert().compile(dialect=conn.dialect, column_keys=list(rows[0]))
    if compiled.positional:
        order = compiled.positiontup or []
        params: list[Any] = [tuple(row[key] for key in order) for row in rows]
    else:
        params = rows
    conn.exec_driver_sql(compiled.string, params)


def delete_for_batch(conn: sa.Connection, batch_id: str) -> None:
    conn.execute(requests.delete().where(requests.c.batch_id == batch_id))


def claim(
    conn: sa.Connection, batch_id: str, owner: str, limit: int, lease_seconds: float
) -> list[ClaimedRequest]:
    """Lease up to `limit` queued requests of one batch, in admission order.

    The admission key (worker/scheduler.py) is empty when every ordering optimisation
    is off, which leaves plain line order.
    """
    if limit <= 0:
        return []
    query = (
        sa.select(
            requests.c.id,
            requests.c.batch_id,
            requests.c.line,
            requests.c.custom_id,
            requests.c.url,
            requests.c.body,
            requests.c.attempts,
            requests.c.dedup_key,
        )
        .where(requests.c.batch_id == batch_id, requests.c.status == QUEUED)
        .order_by(requests.c.admission_key, requests.c.line)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return []
    conn.execute(
        requests.update()
        .where(requests.c.id.in_([r.id for r in rows]), requests.c.status == QUEUED)
        .values(
            status=RUNNING,
            lease_owner=owner,
            lease_expires_at=time.time() + lease_seconds,
            attempts=requests.c.attempts + 1,
        )
    )
    return [
        ClaimedRequest(
            r.id, r.batch_id, r.line, r.custom_id, r.url, r.body, r.attempts + 1, r.dedup_key
        )
        for r in rows
    ]


def renew(conn: sa.Connection, owner: str, lease_seconds: float) -> int:
    """Extend every lease `owner` holds (the heartbeat)."""
    result = conn.execute(
        requests.update()
        .where(requests.c.lease_owner == owner, requests.c.status == RUNNING)
        .values(lease_expires_at=time.time() + lease_seconds)
    )
    return int(result.rowcount)


def release(conn: sa.Connection, owner: str, request_ids: list[str] | None = None) -> int:
    """Give leased requests back to the queue unrun (shutdown, retry); the try is not counted."""
    query = requests.update().where(requests.c.lease_owner == owner, requests.c.status == RUNNING)
    if request_ids is not None:
        query = query.where(requests.c.id.in_(request_ids))
    result = conn.execute(
        query.values(
            status=QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            attempts=requests.c.attempts - 1,
        )
    )
    return int(result.rowcount)


def requeue(conn: sa.Connection, request_id: str) -> bool:
    """Put a running request back in the queue after a transient failure (the try counts)."""
    result = conn.execute(
        requests.update()
        .where(requests.c.id == request_id, requests.c.status == RUNNING)
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return bool(result.rowcount)


def reclaim_expired(conn: sa.Connection) -> int:
    """Return requests whose lease ran out (their worker died) to the queue."""
    result = conn.execute(
        requests.update()
        .where(requests.c.status == RUNNING, requests.c.lease_expires_at < time.time())
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)


_IN_CHUNK = 500  # ids per IN (...) list, well under every driver's parameter limit
_RECORD = (
    requests.update()
    .where(requests.c.id == sa.bindparam("rid"), requests.c.status == RUNNING)
    .values(
        status=sa.bindparam("new_status"),
        status_code=sa.bindparam("new_status_code"),
        response_json=sa.bindparam("new_response_json"),
        error_json=sa.bindparam("new_error_json"),
        input_tokens=sa.bindparam("new_input_tokens"),
        cached_tokens=sa.bindparam("new_cached_tokens"),
        output_tokens=sa.bindparam("new_output_tokens"),
        finished_at=sa.bindparam("new_finished_at"),
        lease_owner=None,
        lease_expires_at=None,
    )
)


def record(conn: sa.Connection, outcomes: list[Outcome]) -> int:
    """Write finished requests still `running`; update batch counters. Returns rows written.

    Must run in a write transaction: which rows are still running is read first (under
    the write lock on SQLite, row locks on PostgreSQL), then all are written with one
    executemany, so a result that lost its lease to another worker is never counted twice.
    """
    running: set[str] = set()
    for start in range(0, len(outcomes), _IN_CHUNK):
        ids = [o.request_id for o in outcomes[start : start + _IN_CHUNK]]
        query = sa.select(requests.c.id).where(requests.c.id.in_(ids), requests.c.status == RUNNING)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        running.update(conn.execute(query).scalars())
    now = time.time()
    rows = []
    per_batch: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for o in outcomes:
        if o.request_id not in running:
            continue
        running.discard(o.request_id)  # the same request twice in one flush counts once
        rows.append(
            {
                "rid": o.request_id,
                "new_status": o.status,
                "new_status_code": o.status_code,
                "new_response_json": o.response_json,
                "new_error_json": o.error_json,
                "new_input_tokens": o.input_tokens,
                "new_cached_tokens": o.cached_tokens,
                "new_output_tokens": o.output_tokens,
                "new_finished_at": now,
            }
        )
        deltas = per_batch[o.batch_id]
        deltas[_COUNTER[o.status]] += 1
        deltas["input_tokens"] += o.input_tokens
        deltas["cached_tokens"] += o.cached_tokens
        deltas["output_tokens"] += o.output_tokens
    if rows:
        conn.execute(_RECORD, rows)
    for batch_id, deltas in per_batch.items():
        batches.add_counts(conn, batch_id, **deltas)
    return len(rows)


def close_open(conn: sa.Connection, batch_id: str, status: str, error_json: str) -> list[str]:
    """End every unfinished request of a batch as `status` (cancelled/expired).

    Returns the ids of those that were running, so their worker can abort them.
    """
    running = (
        conn.execute(
            sa.select(requests.c.id).where(
                requests.c.batch_id == batch_id, requests.c.status == RUNNING
            )
        )
        .scalars()
        .all()
    )
    result = conn.execute(
        requests.update()
        .where(requests.c.batch_id == batch_id, requests.c.status.in_(OPEN))
        .values(
            status=status,
            error_json=error_json,
            finished_at=time.time(),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    batches.add_counts(conn, batch_id, **{_COUNTER[status]: int(result.rowcount)})
    return list(running)


def open_ids(conn: sa.Connection, request_ids: list[str]) -> set[str]:
    """Which of these requests are still running (the others ended meanwhile)."""
    if not request_ids:
        return set()
    query = sa.select(requests.c.id).where(
        requests.c.id.in_(request_ids), requests.c.status == RUNNING
    )
    return set(conn.execute(query).scalars())


def iter_finished(conn: sa.Connection, batch_id: str, chunk: int = 2000) -> Iterator[Any]:
    """Every finished request of a batch in line order, fetched in chunks (flat memory)."""
    last_line = 0
    while True:
        rows = conn.execute(
            sa.select(
                requests.c.id,
                requests.c.line,
                requests.c.custom_id,
                requests.c.status,
                requests.c.status_code,
                requests.c.response_json,
                requests.c.error_json,
            )
            .where(requests.c.batch_id == batch_id, requests.c.line > last_line)
            .order_by(requests.c.line)
            .limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last_line = rows[-1].line


def count_by_status(conn: sa.Connection, batch_id: str) -> dict[str, int]:
    query = (
        sa.select(requests.c.status, sa.func.count())
        .where(requests.c.batch_id == batch_id)
        .group_by(requests.c.status)
    )
    return {status: int(n) for status, n in conn.execute(query).all()}
