"""The files aggregate: metadata rows in the database, bodies in the blob store."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from freight import ids
from freight.errors import NotFound
from freight.store.schema import files

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_OUTPUT = "batch_output"
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
) -> FileRecord:
    file_id = ids.new_id("file-")
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


def get(conn: sa.Connection, file_id: str, project: str | None = None) -> FileRecord:
    query = files.select().where(files.c.id == file_id)
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
    query = files.select()
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
