"""The request queue: one row per input line, claimed by workers under a lease.

Request statuses: queued → running → succeeded | errored, and from queued or running
to cancelled | expired when the batch ends early. A result is recorded only while the
row is still `running`, so a request whose lease was lost and re-run elsewhere is
recorded exactly once, by whichever attempt finished first.

Many workers share the queue on PostgreSQL. Claims skip rows another worker has locked
(`FOR UPDATE SKIP LOCKED`), so claimers never wait on each other. Statements that must
change many rows another worker may also be changing (record, release, close_open) first
lock them in id order, and take the batch row only after the request rows: every
transaction takes its locks in one global order, so none can deadlock. Housekeeping
(renew, reclaim) skips rows locked by others: they are being finished or ended right now.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight.store import batches, line_pages, result_order
from freight.store.schema import requests
from freight.store.statuses import RequestStatus

OPEN = (RequestStatus.QUEUED, RequestStatus.RUNNING)
# A finished request's status -> the batch counter it adds to.
_COUNTER = {
    RequestStatus.SUCCEEDED: "num_succeeded",
    RequestStatus.ERRORED: "num_errored",
    RequestStatus.CANCELLED: "num_cancelled",
    RequestStatus.EXPIRED: "num_expired",
}
FINISHED = tuple(_COUNTER)


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
    cache_key: str | None = None  # set when the result cache may answer it
    priority: int = 0  # its batch's (higher first), given by the worker that claims it


@dataclass(frozen=True)
class Outcome:
    """A finished request, ready to record."""

    request_id: str
    batch_id: str
    status: RequestStatus  # a finished one: succeeded, errored, cancelled or expired
    status_code: int | None = None
    response_json: str | None = None
    error_json: str | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cached_from: str | None = None  # the request whose stored answer this is (result cache)


CLAIMED_COLUMNS = (
    requests.c.id,
    requests.c.batch_id,
    requests.c.line,
    requests.c.custom_id,
    requests.c.url,
    requests.c.body,
    requests.c.attempts,
    requests.c.dedup_key,
    requests.c.cache_key,
)


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


def count_for_batch(conn: sa.Connection, batch_id: str) -> int:
    query = sa.select(sa.func.count()).where(requests.c.batch_id == batch_id)
    return int(conn.execute(query).scalar_one())


def claim(
    conn: sa.Connection,
    batch_id: str,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    models: Collection[str] | None = None,
    priority: int = 0,
    now: float | None = None,
) -> list[ClaimedRequest]:
    """Lease up to `limit` queued requests of one batch, in admission order.

    The admission key (worker/scheduler.py) is empty when every ordering optimisation
    is off, which leaves plain line order. `models`: only requests of these models (a
    worker started with `--models`); None: any. `priority`: the batch's, which each
    request carries into the engine.
    """
    if limit <= 0:
        return []
    where = [
        requests.c.batch_id == batch_id,
        requests.c.status == RequestStatus.QUEUED,
        requests.c.upstream.is_(None),  # upstream Batch API requests: store/upstream.py
    ]
    if models is not None:
        where.append(requests.c.model.in_(list(models)))
    query = (
        sa.select(*CLAIMED_COLUMNS)
        .where(*where)
        .order_by(requests.c.admission_key, requests.c.line)
        .limit(limit)
    )
    if _is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return []
    # By id alone: the rows just read are still queued (SQLite's write transaction shuts
    # out other writers; on PostgreSQL they are locked FOR UPDATE). A `status` term here
    # led SQLite to walk every queued request of every batch, each claim.
    conn.execute(
        requests.update()
        .where(requests.c.id.in_([r.id for r in rows]))
        .values(
            status=RequestStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=(time.time() if now is None else now) + lease_seconds,
            attempts=requests.c.attempts + 1,
        )
    )
    return [
        ClaimedRequest(
            r.id,
            r.batch_id,
            r.line,
            r.custom_id,
            r.url,
            r.body,
            r.attempts + 1,
            r.dedup_key,
            r.cache_key,
            priority,
        )
        for r in rows
    ]


def _is_postgresql(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _locked_update(
    conn: sa.Connection, where: list[Any], *, skip_locked: bool = False
) -> sa.Update | None:
    """An UPDATE of the rows matching `where`, their locks first taken in id order.

    On SQLite the write transaction already excludes every other writer, so this is a
    plain UPDATE. On PostgreSQL the matching rows are locked (ordered by id) before the
    UPDATE, which is what keeps concurrent multi-row updates free of deadlocks; with
    `skip_locked`, rows another transaction holds are left out instead of waited for.
    Returns None when no row matched.
    """
    if not _is_postgresql(conn):
        return requests.update().where(*where)
    query = sa.select(requests.c.id).where(*where).order_by(requests.c.id)
    ids = list(conn.execute(query.with_for_update(skip_locked=skip_locked)).scalars())
    if not ids:
        return None
    return requests.update().where(requests.c.id.in_(ids), *where)


def _update_count(conn: sa.Connection, update: sa.Update | None, **values: Any) -> int:
    if update is None:
        return 0
    return int(conn.execute(update.values(**values)).rowcount)


@dataclass(frozen=True)
class LeasedLines:
    """What claim_all leased: how many requests, between which lines."""

    num_requests: int
    first_line: int
    last_line: int


def claim_all(
    conn: sa.Connection,
    batch_id: str,
    owner: str,
    lease_seconds: float,
    *,
    now: float | None = None,
) -> LeasedLines | None:
    """Lease every queued request of a batch to `owner` (a hand-off to another executor).

    None if nothing was queued. Rows another worker is claiming at this moment are left
    to it.
    """
    where = [
        requests.c.batch_id == batch_id,
        requests.c.status == RequestStatus.QUEUED,
        requests.c.upstream.is_(None),
    ]
    num = _update_count(
        conn,
        _locked_update(conn, where, skip_locked=True),
        status=RequestStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=(time.time() if now is None else now) + lease_seconds,
        attempts=requests.c.attempts + 1,
    )
    if not num:
        return None
    first, last = conn.execute(
        sa.select(sa.func.min(requests.c.line), sa.func.max(requests.c.line)).where(
            requests.c.batch_id == batch_id,
            requests.c.lease_owner == owner,
            requests.c.status == RequestStatus.RUNNING,
        )
    ).one()
    return LeasedLines(num, int(first), int(last))


def leased_lines(
    conn: sa.Connection, batch_id: str, owner: str, first_line: int, last_line: int
) -> list[ClaimedRequest]:
    """The requests of lines first..last that `owner` holds, in line order."""
    rows = conn.execute(
        sa.select(*CLAIMED_COLUMNS)
        .where(
            requests.c.batch_id == batch_id,
            requests.c.lease_owner == owner,
            requests.c.status == RequestStatus.RUNNING,
            requests.c.line.between(first_line, last_line),
        )
        .order_by(requests.c.line)
    ).all()
    return [ClaimedRequest(*row) for row in rows]


def renew(
    conn: sa.Connection, owner: str, lease_seconds: float, *, now: float | None = None
) -> int:
    """Extend every lease `owner` holds (the heartbeat)."""
    update = _locked_update(
        conn,
        [requests.c.lease_owner == owner, requests.c.status == RequestStatus.RUNNING],
        skip_locked=True,
    )
    expires_at = (time.time() if now is None else now) + lease_seconds
    return _update_count(conn, update, lease_expires_at=expires_at)


def release(conn: sa.Connection, owner: str, request_ids: list[str] | None = None) -> int:
    """Give leased requests back to the queue unrun (shutdown, retry); the try is not counted."""
    where = [requests.c.lease_owner == owner, requests.c.status == RequestStatus.RUNNING]
    if request_ids is not None:
        where.append(requests.c.id.in_(request_ids))
    return _update_count(
        conn,
        _locked_update(conn, where),
        status=RequestStatus.QUEUED,
        lease_owner=None,
        lease_expires_at=None,
        attempts=requests.c.attempts - 1,
    )


def requeue(conn: sa.Connection, request_id: str) -> bool:
    """Put a running request back in the queue after a transient failure (the try counts)."""
    result = conn.execute(
        requests.update()
        .where(requests.c.id == request_id, requests.c.status == RequestStatus.RUNNING)
        .values(status=RequestStatus.QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return bool(result.rowcount)


def requeue_many(conn: sa.Connection, owner: str, request_ids: list[str]) -> int:
    """Put those of `request_ids` that `owner` runs back in the queue (the tries count)."""
    where = [
        requests.c.lease_owner == owner,
        requests.c.status == RequestStatus.RUNNING,
        requests.c.id.in_(request_ids),
    ]
    return _update_count(
        conn,
        _locked_update(conn, where),
        status=RequestStatus.QUEUED,
        lease_owner=None,
        lease_expires_at=None,
    )


def reclaim_expired(conn: sa.Connection, *, now: float | None = None) -> int:
    """Return requests whose lease ran out (their worker died) to the queue."""
    now = time.time() if now is None else now
    update = _locked_update(
        conn,
        [requests.c.status == RequestStatus.RUNNING, requests.c.lease_expires_at < now],
        skip_locked=True,
    )
    return _update_count(
        conn, update, status=RequestStatus.QUEUED, lease_owner=None, lease_expires_at=None
    )


_IN_CHUNK = 500  # ids per IN (...) list, well under every driver's parameter limit
_RECORD = (
    requests.update()
    .where(requests.c.id == sa.bindparam("rid"), requests.c.status == RequestStatus.RUNNING)
    .values(
        status=sa.bindparam("new_status"),
        status_code=sa.bindparam("new_status_code"),
        response_json=sa.bindparam("new_response_json"),
        error_json=sa.bindparam("new_error_json"),
        input_tokens=sa.bindparam("new_input_tokens"),
        cached_tokens=sa.bindparam("new_cached_tokens"),
        output_tokens=sa.bindparam("new_output_tokens"),
        finished_at=sa.bindparam("new_finished_at"),
        cached_from=sa.bindparam("new_cached_from"),
        result_seq=sa.bindparam("new_result_seq"),
        lease_owner=None,
        lease_expires_at=None,
    )
)


def record(conn: sa.Connection, outcomes: list[Outcome], *, now: float | None = None) -> int:
    """Write finished requests still `running`; update batch counters. Returns rows written.

    Must run in a write transaction: which rows are still running is read first (under
    the write lock on SQLite, row locks on PostgreSQL), then all are written with one
    executemany, so a result that lost its lease to another worker is never counted twice.
    """
    running: set[str] = set()
    all_ids = sorted({o.request_id for o in outcomes})  # id order: see the module docstring
    for start in range(0, len(all_ids), _IN_CHUNK):
        ids = all_ids[start : start + _IN_CHUNK]
        running |= _running_among(conn, ids, lock=_is_postgresql(conn))
    finished_at = time.time() if now is None else now
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_batch: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for o in outcomes:
        if o.request_id not in running:
            continue
        running.discard(o.request_id)  # the same request twice in one flush counts once
        rows[o.batch_id].append(
            {
                "rid": o.request_id,
                "new_status": o.status,
                "new_status_code": o.status_code,
                "new_response_json": o.response_json,
                "new_error_json": o.error_json,
                "new_input_tokens": o.input_tokens,
                "new_cached_tokens": o.cached_tokens,
                "new_output_tokens": o.output_tokens,
                "new_finished_at": finished_at,
                "new_cached_from": o.cached_from,
            }
        )
        deltas = per_batch[o.batch_id]
        deltas[_COUNTER[o.status]] += 1
        deltas["input_tokens"] += o.input_tokens
        deltas["cached_tokens"] += o.cached_tokens
        deltas["output_tokens"] += o.output_tokens
        deltas["num_from_cache"] += o.cached_from is not None
    # Batch rows after the request rows, in id order. Each batch's results are numbered
    # from its counter in this transaction (store/result_order.py), before they are written.
    written = []
    for batch_id in sorted(per_batch):
        base = result_order.reserve(conn, batch_id, len(rows[batch_id]), **per_batch[batch_id])
        for offset, row in enumerate(rows[batch_id], start=1):
            row["new_result_seq"] = base + offset
        written += rows[batch_id]
    if written:
        conn.execute(_RECORD, written)
    return len(written)


def close_open(
    conn: sa.Connection,
    batch_id: str,
    status: RequestStatus,
    error_json: str,
    *,
    now: float | None = None,
) -> list[str]:
    """End every unfinished request of a batch as `status` (cancelled/expired).

    Returns the ids of those that were running, so their worker can abort them.
    """
    update = _locked_update(conn, [requests.c.batch_id == batch_id, requests.c.status.in_(OPEN)])
    running = (
        conn.execute(
            sa.select(requests.c.id).where(
                requests.c.batch_id == batch_id, requests.c.status == RequestStatus.RUNNING
            )
        )
        .scalars()
        .all()
    )
    num_closed = _update_count(
        conn,
        update,
        status=status,
        error_json=error_json,
        finished_at=time.time() if now is None else now,
        lease_owner=None,
        lease_expires_at=None,
    )
    batches.add_counts(conn, batch_id, **{_COUNTER[status]: num_closed})
    result_order.number_finished(conn, batch_id)
    return list(running)


def recount(conn: sa.Connection, batch_id: str) -> None:
    """Set the batch's total and finished counters from its rows, as they are."""
    by_status = count_by_status(conn, batch_id)
    counters = {name: by_status.get(status, 0) for status, name in _COUNTER.items()}
    batches.set_values(conn, batch_id, num_total=sum(by_status.values()), **counters)


def replace_result(conn: sa.Connection, batch_id: str, request_id: str, error_json: str) -> None:
    """Turn a finished request's stored result into the error `error_json` (`errored`).

    For a result that cannot be written out (worker/finalize.py): the line says why
    instead, and the batch's counters move with it, so they still match the lines.
    """
    row = conn.execute(
        sa.select(requests.c.status, requests.c.cached_from).where(
            requests.c.id == request_id, requests.c.batch_id == batch_id
        )
    ).first()
    if row is None or row.status in OPEN:
        return
    conn.execute(
        requests.update()
        .where(requests.c.id == request_id)
        .values(
            status=RequestStatus.ERRORED,
            status_code=None,
            response_json=None,
            error_json=error_json,
        )
    )
    if row.status != RequestStatus.ERRORED:
        from_cache = -1 if row.cached_from is not None else 0
        batches.add_counts(
            conn,
            batch_id,
            **{_COUNTER[row.status]: -1, "num_errored": 1, "num_from_cache": from_cache},
        )


def _running_among(conn: sa.Connection, ids: list[str], *, lock: bool = False) -> set[str]:
    """Which of `ids` are running; `lock`: lock their rows in id order (PostgreSQL).

    Sought by id alone and the status checked here: with `status = ...` in the WHERE,
    SQLite walks every request of that status through the status index instead.
    """
    query = sa.select(requests.c.id, requests.c.status).where(requests.c.id.in_(ids))
    if lock:
        query = query.order_by(requests.c.id).with_for_update()
    return {r.id for r in conn.execute(query) if r.status == RequestStatus.RUNNING}


def iter_finished(conn: sa.Connection, batch_id: str, chunk: int = 2000) -> Iterator[Any]:
    """Every finished request of a batch in line order, fetched in chunks (flat memory)."""
    return line_pages.by_line(
        conn, line_pages.RESULT_COLUMNS, requests.c.batch_id == batch_id, chunk=chunk
    )


def count_by_status(conn: sa.Connection, batch_id: str) -> dict[RequestStatus, int]:
    query = (
        sa.select(requests.c.status, sa.func.count())
        .where(requests.c.batch_id == batch_id)
        .group_by(requests.c.status)
    )
    return {RequestStatus(status): int(n) for status, n in conn.execute(query).all()}
