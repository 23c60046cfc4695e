"""Alembic environment: runs on the connection that freight.store.db hands over.

Freight migrates itself: every process calls `Database.migrate` on start, which passes
its connection in `config.attributes`. The alembic CLI (docs/guides/development.md) has no such
connection; `-x url=DATABASE_URL` names a development database to open instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError

from freight.store.db import SUPPORTED_URLS, Database
from freight.store.schema import metadata


def run_migrations(connection: sa.Connection) -> None:
    # render_as_batch: SQLite can change a table only by rebuilding it (batch_alter_table).
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_from_cli() -> None:
    if context.is_offline_mode():
        raise CommandError("--sql (offline mode) is not supported: SQLite batch steps reflect")
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise CommandError(f"name the database: alembic -x url=URL ... ({SUPPORTED_URLS})")
    database = Database(url)
    try:
        with database.write() as conn:
            run_migrations(conn)
    finally:
        database.dispose()


if "connection" in context.config.attributes:
    run_migrations(context.config.attributes["connection"])
else:
    run_from_cli()
