"""The API keys table: one row per key, holding its keyed hash, never the key itself."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from freight.errors import NotFound
from freight.store.schema import api_keys


@dataclass(frozen=True)
class KeyRecord:
    id: str
    prefix: str
    hash: str
    project: str
    is_admin: bool
    created_at: int
    expires_at: int | None
    revoked_at: int | None

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def insert(conn: sa.Connection, record: KeyRecord) -> None:
    conn.execute(api_keys.insert().values(**record.__dict__))


def find_by_hash(conn: sa.Connection, key_hash: str) -> KeyRecord | None:
    row = conn.execute(api_keys.select().where(api_keys.c.hash == key_hash)).mappings().first()
    return None if row is None else KeyRecord(**row)


def any_exist(conn: sa.Connection) -> bool:
    """Whether any key was ever created (revoked ones count: revoking every key must not
    reopen the server to everyone)."""
    return conn.execute(sa.select(api_keys.c.id).limit(1)).first() is not None


def list_all(conn: sa.Connection) -> list[KeyRecord]:
    query = api_keys.select().order_by(api_keys.c.project, api_keys.c.created_at)
    return [KeyRecord(**r) for r in conn.execute(query).mappings()]


def revoke(conn: sa.Connection, id_or_prefix: str, now: int) -> KeyRecord:
    """Revoke the key with this id or displayed prefix (idempotent)."""
    query = api_keys.select().where(
        sa.or_(api_keys.c.id == id_or_prefix, api_keys.c.prefix == id_or_prefix)
    )
    rows = conn.execute(query).mappings().all()
    if len(rows) != 1:
        problem = "No key has" if not rows else "Several keys have"
        raise NotFound(f"{problem} the id or prefix {id_or_prefix!r}; see `freight keys list`.")
    record = KeyRecord(**rows[0])
    if record.revoked_at is None:
        conn.execute(api_keys.update().where(api_keys.c.id == record.id).values(revoked_at=now))
    return record
