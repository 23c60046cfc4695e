"""A batch's requests read in pages: in line order, a chunk at a time (flat memory).

Result lines (worker/finalize.py) are made from RESULT_COLUMNS, read in line order for
the final files (batch_requests.iter_finished) and in the order they finished for
GET /v1/batches/{id}/results (store/result_order.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from freight.store.schema import requests

# What a result line is made from (worker/finalize.py, `format_line`).
RESULT_COLUMNS = (
    requests.c.id,
    requests.c.line,
    requests.c.custom_id,
    requests.c.status,
    requests.c.status_code,
    requests.c.response_json,
    requests.c.error_json,
)


def by_line(
    conn: sa.Connection,
    columns: Sequence[sa.ColumnElement[Any]],
    *where: sa.ColumnElement[bool],
    chunk: int = 2000,
) -> Iterator[Any]:
    """The requests that match `where` (their `columns`, which must include `line`), in
    line order, fetched `chunk` rows at a time."""
    last_line = 0
    while True:
        rows = conn.execute(
            sa.select(*columns)
            .where(*where, requests.c.line > last_line)
            .order_by(requests.c.line)
            .limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last_line = rows[-1].line
