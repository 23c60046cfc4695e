"""The order results land in: a per-batch sequence number on each finished request.

GET /v1/batches/{id}/results (a Freight extension) pages through a batch's finished
lines while it runs. Its cursor is `result_seq`: a number each request gets in the
transaction that writes its result, from its batch's counter (`batches.last_result_seq`),
which the same transaction raises. Numbers only grow, and a line keeps its number, so a
reader that asks for the lines after the last number it saw never sees one twice and
never misses one:

- the counter is raised with an UPDATE of the batch row, which on PostgreSQL holds the
  row's lock until commit, so transactions that number lines of one batch commit in
  the order of their numbers (a reader never sees number 12 before 11 has committed);
  SQLite has one writer at a time anyway;
- numbers need not be consecutive (set-based numbering below leaves gaps), only unique
  and increasing.

Row offsets or timestamps would not do: a row written later can sort before one
already read. Requests still queued or running have no number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight.store import line_pages
from freight.store.schema import batches, requests
from freight.store.statuses import RequestStatus

FINISHED = (
    RequestStatus.SUCCEEDED,
    RequestStatus.ERRORED,
    RequestStatus.CANCELLED,
    RequestStatus.EXPIRED,
)


def reserve(conn: sa.Connection, batch_id: str, num: int, **deltas: int) -> int:
    """Take `num` numbers from the batch's counter; the number before the first of them.

    `deltas` are added to the batch's other counters (num_*, *_tokens) in the same
    UPDATE. The caller's transaction then holds the batch row (see the module docstring)
    and must give the numbers to rows it writes before it commits.
    """
    values = {name: batches.c[name] + delta for name, delta in deltas.items() if delta}
    conn.execute(
        batches.update()
        .where(batches.c.id == batch_id)
        .values(last_result_seq=batches.c.last_result_seq + num, **values)
    )
    last = conn.execute(
        sa.select(batches.c.last_result_seq).where(batches.c.id == batch_id)
    ).scalar_one()
    return int(last) - num


def number_finished(conn: sa.Connection, batch_id: str) -> int:
    """Number every finished request of the batch that has no number yet; how many.

    For rows finished in bulk (closed by a cancel or expiry, errored at ingest): each gets
    the counter plus its line, so one UPDATE numbers them all, in line order. The rows
    are locked first (in id order on PostgreSQL), then the batch row, as everywhere
    (store/batch_requests.py).
    """
    where = [
        requests.c.batch_id == batch_id,
        requests.c.result_seq.is_(None),
        requests.c.status.in_(FINISHED),
    ]
    if conn.dialect.name == "postgresql":
        locking = sa.select(requests.c.id).where(*where).order_by(requests.c.id)
        conn.execute(locking.with_for_update()).all()
    max_line = conn.execute(sa.select(sa.func.max(requests.c.line)).where(*where)).scalar_one()
    if max_line is None:
        return 0
    base = reserve(conn, batch_id, int(max_line))
    result = conn.execute(requests.update().where(*where).values(result_seq=base + requests.c.line))
    return int(result.rowcount)


@dataclass(frozen=True)
class ResultsPage:
    """Finished requests after a cursor, in the order they landed."""

    rows: list[Any]  # the columns worker/finalize.py's format_line reads, and result_seq
    next_cursor: int  # pass as `after` for the next page (the same cursor when empty)


def page(conn: sa.Connection, batch_id: str, *, after: int, limit: int) -> ResultsPage:
    """Up to `limit` finished requests numbered after `after`, lowest number first."""
    rows = conn.execute(
        sa.select(*line_pages.RESULT_COLUMNS, requests.c.result_seq)
        .where(requests.c.batch_id == batch_id, requests.c.result_seq > after)
        .order_by(requests.c.result_seq)
        .limit(limit)
    ).all()
    return ResultsPage(list(rows), rows[-1].result_seq if rows else after)


def latest(conn: sa.Connection, batch_id: str, num: int) -> list[Any]:
    """The `num` requests that finished last (custom_id, status, status_code, response_json,
    error_json), the latest first: the dashboard's latest answers."""
    return list(
        conn.execute(
            sa.select(
                requests.c.custom_id,
                requests.c.status,
                requests.c.status_code,
                requests.c.response_json,
                requests.c.error_json,
            )
            .where(requests.c.batch_id == batch_id, requests.c.result_seq.is_not(None))
            .order_by(requests.c.result_seq.desc())
            .limit(num)
        ).all()
    )
