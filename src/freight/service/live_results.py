"""A batch's finished lines while it runs: GET /v1/batches/{id}/results (a Freight extension).

Each page holds the lines numbered after the cursor (store/result_order.py), formatted
exactly as the batch's output and error files will hold them (worker/finalize.py), in
the order they landed, and the cursor for the next page. A line is never served twice
across cursors; once the batch has ended and a page comes back short, every line has
been served (`is_complete`).
"""

from __future__ import annotations

from dataclasses import dataclass

from freight.errors import InvalidRequest
from freight.service.runtime import Service
from freight.store import batches, result_order
from freight.worker import finalize

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_DIGITS = 18  # a cursor fits a signed 64-bit column with room to spare


@dataclass(frozen=True)
class LinesPage:
    """One page of result lines (JSONL), and where the next one starts."""

    body: bytes
    num_lines: int
    next_cursor: str
    batch_status: str
    is_complete: bool  # the batch has ended and no line is left after next_cursor


def parse_cursor(after: str | None) -> int:
    """`after` as a cursor: absent or empty for the first page, else a number a page gave."""
    if after is None or after == "":
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > _MAX_DIGITS:
        raise InvalidRequest(
            f"Invalid after {after[:40]!r}: give the Freight-Next-Cursor header of the last "
            "page (a non-negative integer), or leave it out for the first page.",
            param="after",
        )
    return int(after)


def parse_limit(limit: str | None) -> int:
    """`limit` as a page size: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    if limit is None:
        return DEFAULT_LIMIT
    if limit.isascii() and limit.isdigit() and len(limit) <= 6 and 1 <= int(limit) <= MAX_LIMIT:
        return int(limit)
    raise InvalidRequest(
        f"Invalid limit {limit[:40]!r}: give an integer from 1 to {MAX_LIMIT} "
        f"(default {DEFAULT_LIMIT}).",
        param="limit",
    )


def read_page(
    svc: Service, batch_id: str, visible: str | None, *, after: str | None, limit: str | None
) -> LinesPage:
    """The page of `batch_id`'s lines after `after`; NotFound outside `visible`'s project."""
    cursor, size = parse_cursor(after), parse_limit(limit)
    with svc.db.read() as conn:
        # The status first: if it has ended, every line was numbered before it did, so
        # the page read after it is complete when it comes back short.
        batch = batches.get(conn, batch_id, visible, api="openai")
        page = result_order.page(conn, batch_id, after=cursor, limit=size)
    body = b"".join(finalize.format_line_or_error(row) for row in page.rows)
    return LinesPage(
        body=body,
        num_lines=len(page.rows),
        next_cursor=str(page.next_cursor),
        batch_status=batch.status,
        is_complete=batch.is_terminal and len(page.rows) < size,
    )
