"""The database handle: engine creation, migrations, and read/write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event

_MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """One SQLAlchemy engine plus the transaction discipline Freight relies on.

    On SQLite (WAL mode) a write transaction starts with `BEGIN IMMEDIATE`, so two
    writers queue on the busy timeout instead of failing when one upgrades a read
    lock. Readers never block writers.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        self.engine = sa.create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    def migrate(self) -> None:
        """Bring the schema up to the newest migration."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")  # branches of parallel work merge as several heads

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def open_database(url: str, home: Path | None = None) -> Database:
    """Open (creating the folder for SQLite) and migrate."""
    if url.startswith("sqlite:///") and home is not None:
        home.mkdir(parents=True, exist_ok=True)
    db = Database(url)
    db.migrate()
    return db
