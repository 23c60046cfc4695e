"""The files aggregate: metadata rows in the database, bodies in the blob store.

A row whose purpose is RESERVED holds storage for a body still arriving (an upload or a
Message Batch create; quotas.StorageHold): its bytes count toward the project's
`max_stored_bytes`, and no API route sees it. It becomes the file's row when the upload
completes, and goes when the upload fails, or, after a crash, when store/orphans.py
finds it stale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from freight import ids
from freight.errors import NotFound
from freight.store.schema import files

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_OUTPUT = "batch_output"
RESERVED = "_reserved"  # not an upload purpose: clients cannot name it
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class FileRecord:
    id: str
    project: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    created_ns: int
    expires_at: int | None
    blob: str


def new_record(
    *,
    project: str,
    filename: str,
    purpose: str,
    num_bytes: int,
    expires_after: int | None = None,
    blob: str | None = None,
    file_id: str | None = None,
) -> FileRecord:
    file_id = file_id or ids.new_id("file-")
    now_ns = time.time_ns()
    now = now_ns // 1_000_000_000
    return FileRecord(
        id=file_id,
        project=project,
        filename=filename,
        purpose=purpose,
        bytes=num_bytes,
        created_at=now,
        created_ns=now_ns,
        expires_at=now + expires_after if expires_after else None,
        blob=blob or file_id,
    )


def insert(conn: sa.Connection, record: FileRecord) -> None:
    conn.execute(files.insert().values(**record.__dict__))


def reserve(conn: sa.Connection, *, project: str, blob: str, num_bytes: int) -> str:
    """Insert a RESERVED row holding `num_bytes` for `blob`; returns its id."""
    record = new_record(
        project=project, filename=blob, purpose=RESERVED, num_bytes=num_bytes, blob=blob
    )
    insert(conn, record)
    return record.id


def resize_reservation(conn: sa.Connection, file_id: str, num_bytes: int) -> bool:
    """Set what a RESERVED row holds; False if it is gone (released or collected)."""
    update = (
        files.update()
        .where(files.c.id == file_id, files.c.purpose == RESERVED)
        .values(bytes=num_bytes)
    )
    return conn.execute(update).rowcount == 1


def complete_reservation(conn: sa.Connection, record: FileRecord) -> bool:
    """Turn the RESERVED row `record.id` into `record`; False if it is gone."""
    values = {k: v for k, v in record.__dict__.items() if k != "id"}
    update = (
        files.update().where(files.c.id == record.id, files.c.purpose == RESERVED).values(values)
    )
    return conn.execute(update).rowcount == 1


def release(conn: sa.Connection, file_id: str) -> bool:
    """Delete a RESERVED row; False if it was gone (or completed meanwhile)."""
    delete = files.delete().where(files.c.id == file_id, files.c.purpose == RESERVED)
    return conn.execute(delete).rowcount == 1


def stale_reservations(conn: sa.Connection, before: int, limit: int) -> list[FileRecord]:
    """RESERVED rows created before `before` (unix s): uploads a crash cut short."""
    query = (
        files.select()
        .where(files.c.purpose == RESERVED, files.c.created_at < before)
        .order_by(files.c.created_at)
        .limit(limit)
    )
    return [FileRecord(**row) for row in conn.execute(query).mappings()]


def blobs_in_use(conn: sa.Connection, names: list[str]) -> set[str]:
    """Which of the blob `names` a row (a file, or a reservation) points at."""
    query = sa.select(files.c.blob).where(files.c.blob.in_(names))
    return set(conn.execute(query).scalars())


def get(conn: sa.Connection, file_id: str, project: str | None = None) -> FileRecord:
    query = files.select().where(files.c.id == file_id, files.c.purpose != RESERVED)
    if project is not None:
        query = query.where(files.c.project == project)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"No such File object: {file_id}", param="file_id")
    return FileRecord(**row)


def list_page(
    conn: sa.Connection,
    *,
    project: str | None,
    purpose: str | None,
    after: str | None,
    limit: int,
    newest_first: bool,
) -> tuple[list[FileRecord], bool]:
    """One page of files and whether more follow. `after` is the last id of the previous page."""
    query = files.select().where(files.c.purpose != RESERVED)
    if project is not None:
        query = query.where(files.c.project == project)
    if purpose is not None:
        query = query.where(files.c.purpose == purpose)
    key = sa.tuple_(files.c.created_ns, files.c.id)
    if after is not None:
        cursor = get(conn, after, project)
        bound = sa.tuple_(sa.literal(cursor.created_ns), sa.literal(cursor.id))
        query = query.where(key < bound if newest_first else key > bound)
    if newest_first:
        query = query.order_by(files.c.created_ns.desc(), files.c.id.desc())
    else:
        query = query.order_by(files.c.created_ns, files.c.id)
    rows = conn.execute(query.limit(limit + 1)).mappings().all()
    return [FileRecord(**r) for r in rows[:limit]], len(rows) > limit


def delete(conn: sa.Connection, file_id: str, project: str | None = None) -> FileRecord:
    record = get(conn, file_id, project)
    conn.execute(files.delete().where(files.c.id == file_id))
    return record
