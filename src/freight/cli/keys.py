"""`freight keys`: create, list and revoke API keys (run on a machine with the store)."""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from freight.cli.common import HomeOption, err, fail, open_store
from freight.errors import FreightError
from freight.service import access
from freight.store import api_keys

keys_app = typer.Typer(
    help="API keys: each belongs to a project; --admin keys see every project.",
    no_args_is_help=True,
)
out = Console()


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@keys_app.command("create")
def create(
    project: Annotated[str, typer.Option(help="The project the key belongs to.")],
    admin: Annotated[bool, typer.Option("--admin", help="May see every project.")] = False,
    expires_in: Annotated[
        float | None, typer.Option("--expires-in", min=0, help="Expire after DAYS days.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create a key and print it, once: it is stored only as a keyed hash.

    The first key of a new deployment may come before its first `freight serve`, so this
    command creates the store if the home has none (and says so)."""
    with open_store(home, may_create=True) as (settings, db):
        try:
            record, key = access.KeyRing(settings, db).create(
                project, is_admin=admin, expires_in_days=expires_in
            )
        except FreightError as exc:
            fail(exc)
    kind = "admin key" if admin else "key"
    err.print(f"Created {kind} {record.id} for project '{project}'. It is shown only now:")
    print(key)


def _status(record: api_keys.KeyRecord, now: float) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "expired" if record.is_expired(now) else "active"


def _day(unix: int | None) -> str:
    return "" if unix is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(unix))


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Every key: id, shown prefix, project, admin, status. Never the keys themselves."""
    with open_store(home) as (_, db), db.read() as conn:
        records = api_keys.list_all(conn)
    now = time.time()
    rows = [
        {
            "id": r.id,
            "prefix": r.prefix,
            "project": r.project,
            "admin": r.is_admin,
            "status": _status(r, now),
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "revoked_at": r.revoked_at,
        }
        for r in records
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "prefix", "project", "admin", "status", "created", "expires (UTC)")
    for row in rows:
        table.add_row(
            str(row["id"]),
            f"{row['prefix']}...",
            str(row["project"]),
            "yes" if row["admin"] else "",
            str(row["status"]),
            _day(row["created_at"]),  # type: ignore[arg-type]
            _day(row["expires_at"]),  # type: ignore[arg-type]
        )
    # Piped: wide enough that ids and prefixes are never wrapped (scripts grep them).
    (out if out.is_terminal else Console(width=200)).print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id or its shown prefix.")],
    home: HomeOption = None,
) -> None:
    """Revoke a key: calls with it get 401 from now on."""
    with open_store(home) as (_, db):
        try:
            with db.write() as conn:
                record = api_keys.revoke(conn, key_id, int(time.time()))
        except FreightError as exc:
            fail(exc)
    err.print(f"Revoked {record.id} ({record.prefix}..., project '{record.project}').")
