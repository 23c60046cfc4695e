"""`freight webhooks ...`: manage webhook endpoints and read delivery logs in the store.

These commands work on the store of FREIGHT_HOME (or --home) directly, like `freight
report`, so an operator can set up endpoints for any project. Exit codes (the table in
freight.cli.main): 0 success, 2 bad arguments or configuration, a home without a store,
or no such endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from freight import netguard
from freight.cli.common import HomeOption, fail, load_settings, open_store
from freight.errors import FreightError, NotFound
from freight.protocol import webhook_wire
from freight.store import webhook_store
from freight.store.files import DEFAULT_PROJECT

webhooks_app = typer.Typer(
    help="Signed batch webhooks: add, list and remove endpoints; see deliveries.",
    no_args_is_help=True,
)
out = Console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", help="Only this project's endpoints (default: all).")
]


def _when(unix: float | None) -> str:
    return "" if unix is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where events are POSTed (http:// or https://).")],
    project: Annotated[
        str, typer.Option("--project", help="The project whose batches it hears about.")
    ] = DEFAULT_PROJECT,
    name: Annotated[str, typer.Option("--name", help="A human-readable name.")] = "",
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            help=f"Event types to send, repeated or comma-separated (default: all of "
            f"{', '.join(webhook_store.EVENT_TYPES)}).",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Add an endpoint and print its signing secret (shown only this once)."""
    wanted = (
        [e.strip() for item in events for e in item.split(",") if e.strip()] if events else None
    )
    settings = load_settings(home).webhooks
    policy = netguard.AddressPolicy.from_allow_hosts(settings.allow_hosts)
    try:
        url = webhook_wire.check_url(url)
        event_types = webhook_wire.check_event_types(wanted)
        asyncio.run(netguard.check_url_destination(url, policy, timeout=settings.timeout_seconds))
    except FreightError as exc:
        fail(exc)
    with open_store(home) as (_, db), db.write() as conn:
        record = webhook_store.add_endpoint(
            conn,
            project=project,
            name=name,
            url=url,
            event_types=event_types,
            secret=webhook_wire.new_secret(),
        )
    out.print(f"Added webhook endpoint [bold]{record.id}[/bold] for project {record.project}")
    out.print(f"  url:    {record.url}", highlight=False)
    out.print(f"  events: {', '.join(record.event_types)}", highlight=False)
    out.print("Signing secret (shown only now; verify deliveries with it):")
    print(record.secret)  # plain, on a line of its own, for scripts


@webhooks_app.command("list")
def list_(
    project: ProjectOption = None, as_json: JsonOption = False, home: HomeOption = None
) -> None:
    """List endpoints, newest first (without their secrets)."""
    with open_store(home) as (_, db), db.read() as conn:
        records = webhook_store.list_endpoints(conn, project)
    if as_json:
        items = [
            {**webhook_wire.endpoint_object(r).model_dump(), "project": r.project} for r in records
        ]
        print(json.dumps(items, indent=2))
        return
    table = Table("id", "project", "name", "url", "events", "created (UTC)")
    for r in records:
        table.add_row(
            r.id,
            r.project,
            r.name,
            webhook_wire.display_url(r.url),
            ", ".join(r.event_types),
            _when(r.created_at),
        )
    out.print(table if records else "No webhook endpoints.")


@webhooks_app.command("remove")
def remove(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (we_...).")],
    home: HomeOption = None,
) -> None:
    """Remove an endpoint; its pending deliveries are dropped with its delivery log."""
    with open_store(home) as (_, db):
        try:
            with db.write() as conn:
                record = webhook_store.remove_endpoint(conn, endpoint_id)
        except NotFound as exc:
            fail(exc)
    out.print(
        f"Removed webhook endpoint {record.id} ({webhook_wire.display_url(record.url)})",
        highlight=False,
    )


@webhooks_app.command("deliveries")
def deliveries(
    endpoint_id: Annotated[
        str | None, typer.Argument(help="Only this endpoint's deliveries (default: all).")
    ] = None,
    project: ProjectOption = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest N deliveries.")] = 50,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """The delivery log, newest first: event, attempts, last answer or error, delivered time."""
    with open_store(home) as (_, db), db.read() as conn:
        try:
            if endpoint_id is not None:
                webhook_store.get_endpoint(conn, endpoint_id, project)
        except NotFound as exc:
            fail(exc)
        records = webhook_store.list_deliveries(
            conn, endpoint_id=endpoint_id, project=project, limit=limit
        )
    if as_json:
        print(json.dumps([webhook_wire.delivery_object(r).model_dump() for r in records], indent=2))
        return
    table = Table(
        "event",
        "type",
        "batch",
        "endpoint",
        "status",
        "attempts",
        "last status",
        "last error",
        "delivered (UTC)",
    )
    for r in records:
        table.add_row(
            r.event_id,
            r.event_type,
            r.batch_id,
            r.endpoint_id,
            r.status,
            str(r.attempts),
            "" if r.last_status_code is None else str(r.last_status_code),
            r.last_error or "",
            _when(r.delivered_at),
        )
    out.print(table if records else "No webhook deliveries.")
