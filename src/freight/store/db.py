"""The database handle: engine creation, migrations, and read/write transactions.

Two backends run the same schema, migrations and queries: SQLite (one machine, the
default) and PostgreSQL through psycopg 3 (`postgresql+psycopg://...`), which many API
and worker processes on many machines share. Where they differ, the difference lives
here or is named where it is used (`is_postgresql` in store/batch_requests.py).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from freight.errors import ConfigError
from freight.store import private, schema

_MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration: the schema store/schema.py declares. A database already there
# needs no Alembic at all; an empty one is built from schema.py in one step and stamped
# with it (Alembic's recipe for a new database) instead of replaying every revision.
# tests/integration/test_migrations.py checks that this is Alembic's one head and that
# both ways build the same tables.
HEAD_REVISION = "0018_result_cache"
# Key of the PostgreSQL advisory lock that serialises migrations across processes.
MIGRATION_LOCK_KEY = zlib.crc32(b"freight-migrations")
SUPPORTED_URLS = "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE"


class Database:
    """One SQLAlchemy engine plus the transaction discipline Freight relies on.

    SQLite (WAL mode): a write transaction starts with `BEGIN IMMEDIATE`, so two
    writers queue on the busy timeout instead of failing when one upgrades a read
    lock. Readers never block writers.

    PostgreSQL (READ COMMITTED): writers lock rows, not the database. Every status
    change is a conditional UPDATE whose row count says whether it won, queues are
    claimed with `FOR UPDATE SKIP LOCKED`, and statements that lock many request rows
    lock them in id order (store/batch_requests.py), so concurrent workers never deadlock.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgresql = url.startswith("postgresql")
        if not (self.is_sqlite or self.is_postgresql):
            raise ConfigError(f"database_url {url!r} is not supported; use {SUPPORTED_URLS}")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            # Survive a database restart or a dropped idle connection without an error.
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"database_url {url!r}: {exc}; use {SUPPORTED_URLS}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    def migrate(self) -> None:
        """Bring the schema up to the newest migration, safely from many processes at once.

        A database at HEAD_REVISION is left as it is; an empty one gets schema.py's tables
        and HEAD_REVISION at once; any other runs Alembic's `upgrade head`. All of it runs
        in one write transaction. On SQLite that transaction holds the
        database's write lock from its start; on PostgreSQL an advisory lock taken first
        makes concurrent migrators wait, and the waiters then find the schema current.
        """
        with self.write() as conn:
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            tables = set(sa.inspect(conn).get_table_names())
            applied = _applied_revisions(conn) if _VERSION_TABLE.name in tables else set()
            if applied == {HEAD_REVISION}:
                return
            if not applied and not tables - {_VERSION_TABLE.name}:
                schema.metadata.create_all(conn)
                _VERSION_TABLE.create(conn, checkfirst=True)
                conn.execute(_VERSION_TABLE.insert().values(version_num=HEAD_REVISION))
                return
            # Alembic is imported only here: most processes find the schema current, and
            # each `freight` command is a process start (tests/unit/test_cli_imports.py).
            from alembic import command
            from alembic.config import Config as AlembicConfig

            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")  # one head: new revisions follow 0013_merge_heads

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


# Alembic's own record of the applied revisions, declared as Alembic creates it.
_VERSION_TABLE = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _applied_revisions(conn: sa.Connection) -> set[str]:
    return set(conn.execute(sa.select(_VERSION_TABLE.c.version_num)).scalars())


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def lock(conn: sa.Connection, name: str) -> None:
    """Hold `name` until `conn`'s write transaction ends: holders of one name take turns.

    For check-then-write steps that must not interleave across processes (a quota's
    count and the row that uses it). On PostgreSQL this is a transaction-level advisory
    lock (many API processes share the database); on SQLite the write transaction
    already holds the database's only write lock from its first statement.
    """
    if not conn.info.get("write"):
        raise RuntimeError("db.lock needs a write transaction (Database.write)")
    if conn.dialect.name == "postgresql":
        digest = hashlib.blake2b(f"freight:{name}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def open_database(url: str, home: Path | None = None) -> Database:
    """Open (creating FREIGHT_HOME and the SQLite file private to this user) and migrate."""
    if home is not None:
        private.secure_home(home)
    if url.startswith("sqlite:///"):
        _make_sqlite_file_private(url)
    db = Database(url)
    db.migrate()
    return db


def _make_sqlite_file_private(url: str) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm copy the mode)."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    database = Path(path)
    if not database.parent.is_dir():
        return  # SQLite's own error names the missing folder
    private.touch(database)
    for suffix in ("-wal", "-shm"):
        private.tighten(database.with_name(database.name + suffix))
