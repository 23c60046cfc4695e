"""SQLite's query plans for the statements a store call sends (EXPLAIN QUERY PLAN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from freight.store.db import Database


def plans_of(db: Database, call: Callable[[sa.Connection], Any]) -> dict[str, str]:
    """Run `call` in a write transaction, rolled back; each statement it sent, with the
    plan SQLite chose for it."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
            sent.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.engine.connect() as conn:
            conn.info["write"] = True
            transaction = conn.begin()
            call(conn)
            plans = {
                statement: " / ".join(
                    str(row[-1])
                    for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                )
                for statement, params in list(sent)
            }
            transaction.rollback()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    return plans
