"""What a project holds right now, for its quotas: stored bytes and unfinished requests."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from freight.store.batches import ACTIVE
from freight.store.schema import batches, files
from freight.store.statuses import BatchStatus


def stored_bytes(conn: sa.Connection, project: str) -> int:
    """Bytes of the project's files (uploads, batch output/error files) and of the
    uploads still arriving (reserved rows, store/files.py)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(files.c.bytes), 0)).where(
        files.c.project == project
    )
    return int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class OpenWork:
    """A project's unfinished batch requests: counted ones, and the input files of
    OpenAI batches still being validated (their requests are not counted yet)."""

    num_open: int
    unvalidated_blobs: list[str]


def open_work(conn: sa.Connection, project: str) -> OpenWork:
    """The project's open work. Never less than the truth, even between the two queries.

    On PostgreSQL each statement reads what was committed when it starts. An ingest
    commits a batch's count and its move out of `validating` together, so reading the
    unvalidated batches first can only count a batch twice (once as a file, once as
    requests), never zero times.
    """
    active = sa.and_(batches.c.project == project, batches.c.status.in_(ACTIVE))
    pending = conn.execute(
        sa.select(files.c.blob)
        .select_from(batches.join(files, files.c.id == batches.c.input_file_id))
        .where(active, batches.c.status == BatchStatus.VALIDATING, batches.c.num_total == 0)
    ).scalars()
    unvalidated = list(pending)
    finished = (
        batches.c.num_succeeded
        + batches.c.num_errored
        + batches.c.num_cancelled
        + batches.c.num_expired
    )
    num_open = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(batches.c.num_total - finished), 0)).where(active)
    ).scalar_one()
    return OpenWork(int(num_open), unvalidated)
