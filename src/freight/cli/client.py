"""Client commands of the `freight` CLI: talk to a running server over its HTTP API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from freight.cli.common import fail
from freight.store import batches
from freight.store.statuses import BatchStatus

files_app = typer.Typer(help="Upload, list and download files.", no_args_is_help=True)
batches_app = typer.Typer(
    help="Create, inspect, cancel and wait for batches.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

BaseUrl = Annotated[
    str,
    typer.Option("--base-url", envvar="FREIGHT_BASE_URL", help="The server's /v1 URL."),
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="FREIGHT_API_KEY", help="API key, if required.")
]
DEFAULT_BASE = "http://127.0.0.1:8000/v1"


def _call(base_url: str, api_key: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """The server's answer; a failed call ends the command with a message that says what
    to do next, and the exit code of freight.cli.main's table: 2 for a request the server
    refused as given (4xx but 429), else 1."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, base_url.rstrip("/") + path, headers=headers, timeout=120, **kwargs
        )
    except httpx.ConnectError as exc:
        fail(
            f"cannot reach Freight at {base_url} ({exc}): start it with `freight serve`, "
            "or give its URL with --base-url (or $FREIGHT_BASE_URL)",
            code=1,
        )
    except httpx.TransportError as exc:
        fail(f"cannot reach Freight at {base_url}: {exc}", code=1)
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        if response.status_code == 401:
            message += (
                " (pass a valid key with --api-key or $FREIGHT_API_KEY; `freight keys "
                "create` on the server's machine makes one)"
            )
        is_refused = 400 <= response.status_code < 500 and response.status_code != 429
        fail(f"HTTP {response.status_code}: {message}", code=2 if is_refused else 1)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def _show(obj: Any, quiet: bool) -> None:
    if quiet:
        out.print(obj["id"])
    else:
        out.print_json(json.dumps(obj))


@files_app.command("upload")
def files_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    purpose: Annotated[str, typer.Option(help="File purpose.")] = "batch",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the id.")] = False,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Upload a file (a batch input file by default)."""
    with open(path, "rb") as fh:
        obj = _call(
            base_url,
            api_key,
            "POST",
            "/files",
            data={"purpose": purpose},
            files={"file": (path.name, fh, "application/jsonl")},
        )
    _show(obj, quiet)


@files_app.command("list")
def files_list(base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """List files, newest first."""
    page = _call(base_url, api_key, "GET", "/files")
    table = Table("purpose", "bytes", "filename", "created")
    table.columns.insert(0, Column("id", no_wrap=True))
    for f in page["data"]:
        table.add_row(
            f["id"],
            f["purpose"],
            str(f["bytes"]),
            f["filename"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["created_at"])),
        )
    out.print(table)


@files_app.command("download")
def files_download(
    file_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write it.")],
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Download a file's content (e.g. a batch's output file)."""
    content = _call(base_url, api_key, "GET", f"/files/{file_id}/content")
    output.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    err.print(f"wrote {output}")


@batches_app.command("create")
def batches_create(
    input_file_id: Annotated[str, typer.Option(help="An uploaded file with purpose batch.")],
    endpoint: Annotated[str, typer.Option(help="The endpoint every line uses.")] = (
        "/v1/chat/completions"
    ),
    window: Annotated[str, typer.Option(help="Completion window: 24h, or <n>s|m|h|d.")] = "24h",
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the id.")] = False,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Create a batch from an uploaded file."""
    pairs = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/red] --metadata expects KEY=VALUE, got {item!r}")
            raise typer.Exit(2)
        pairs[key] = value
    body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": window}
    if pairs:
        body["metadata"] = pairs  # type: ignore[assignment]
    _show(_call(base_url, api_key, "POST", "/batches", json=body), quiet)


@batches_app.command("get")
def batches_get(batch_id: str, base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """Show one batch."""
    _show(_call(base_url, api_key, "GET", f"/batches/{batch_id}"), quiet=False)


@batches_app.command("list")
def batches_list(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """List batches, newest first."""
    page = _call(base_url, api_key, "GET", "/batches", params={"limit": limit})
    table = Table("status", "done", "failed", "total", "endpoint", "created")
    table.columns.insert(0, Column("id", no_wrap=True))
    for b in page["data"]:
        counts = b["request_counts"]
        table.add_row(
            b["id"],
            b["status"],
            str(counts["completed"]),
            str(counts["failed"]),
            str(counts["total"]),
            b["endpoint"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created_at"])),
        )
    out.print(table)


@batches_app.command("cancel")
def batches_cancel(batch_id: str, base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """Cancel a batch: finished lines are kept, the rest get batch_cancelled lines."""
    _show(_call(base_url, api_key, "POST", f"/batches/{batch_id}/cancel"), quiet=False)


@batches_app.command("wait")
def batches_wait(
    batch_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Download the output file here.")
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Download the error file here (default: into OUTPUT too)."),
    ] = None,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Wait for a batch to end, with a progress bar; exit 0 completed, 3 with errors, else 1.

    With -o, its error lines follow its result lines there, as `freight run` writes them,
    unless --errors names their own file."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(BatchStatus.VALIDATING, total=None)
        while True:
            batch = _call(base_url, api_key, "GET", f"/batches/{batch_id}")
            counts = batch["request_counts"]
            progress.update(
                task,
                description=batch["status"],
                total=counts["total"] or None,
                completed=counts["completed"] + counts["failed"],
            )
            if batch["status"] in batches.TERMINAL:
                break
            time.sleep(interval)
    contents: dict[Path, bytes] = {}
    for file_id, path in (
        (batch.get("output_file_id"), output),
        (batch.get("error_file_id"), errors or output),
    ):
        if file_id and path is not None:
            content = _call(base_url, api_key, "GET", f"/files/{file_id}/content")
            contents[path] = contents.get(path, b"") + content
    for path, content in contents.items():
        path.write_bytes(content)
        err.print(f"wrote {path}")
    _show(batch, quiet=False)
    if batch["status"] != BatchStatus.COMPLETED:
        raise typer.Exit(1)
    raise typer.Exit(3 if batch["request_counts"]["failed"] else 0)


def models(base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """List the models the server offers, with the device each started engine runs on;
    an alias with its model's."""
    root = base_url.rstrip("/").removesuffix("/v1")
    health = _call(root, api_key, "GET", "/health")
    devices, aliases = health.get("engine_devices", {}), health.get("model_aliases", {})
    for card in _call(base_url, api_key, "GET", "/models")["data"]:
        name = aliases.get(card["id"], card["id"])
        alias_of = f" (alias of {name})" if name != card["id"] else ""
        out.print(f"{card['id']}\t{devices.get(name, 'not started')}{alias_of}", highlight=False)
