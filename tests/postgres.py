"""Throwaway PostgreSQL databases for tests: each test gets its own, dropped afterwards.

PostgreSQL runs on 127.0.0.1:5432 with trust auth on these machines (and in CI);
`FREIGHT_TEST_POSTGRES` points the tests at another server (an admin URL whose database
may be any existing one).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("FREIGHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def temporary_database(prefix: str = "freight_test") -> Iterator[str]:
    """Create a uniquely named database; yield its SQLAlchemy URL; drop it (connections too)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", 5432), info.get("user")
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
