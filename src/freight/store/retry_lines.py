"""Which requests of an ended batch a retry runs again (POST /v1/batches/{id}/retry).

A request did not succeed when it was cancelled, expired, or errored. An error is the
server's side (worth running again as it is) when it has no HTTP status (the worker gave
up on it: `engine_error`, `ingest_failed`, `result_unwritable`) or a 5xx one; a 4xx one
is the request's own (`invalid_request`: a bad line, a prompt too long for the model),
retried only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from freight.store import line_pages
from freight.store.schema import requests
from freight.store.statuses import RequestStatus

INVALID_REQUEST = "invalid_request"


def _retryable(include_invalid: bool) -> Any:
    errored = requests.c.status == RequestStatus.ERRORED
    if not include_invalid:
        errored = sa.and_(
            errored, sa.or_(requests.c.status_code.is_(None), requests.c.status_code >= 500)
        )
    return sa.or_(requests.c.status.in_((RequestStatus.CANCELLED, RequestStatus.EXPIRED)), errored)


def iter_retryable(
    conn: sa.Connection, batch_id: str, *, include_invalid: bool, chunk: int = 2000
) -> Iterator[Any]:
    """The requests to run again, in line order (line, custom_id, url, body), in chunks."""
    columns = (requests.c.line, requests.c.custom_id, requests.c.url, requests.c.body)
    return line_pages.by_line(
        conn,
        columns,
        requests.c.batch_id == batch_id,
        _retryable(include_invalid),
        chunk=chunk,
    )
