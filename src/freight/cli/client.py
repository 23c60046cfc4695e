"""Client commands of the `freight` CLI: talk to a running server over its HTTP API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Column, Table

from freight.cli import table_options
from freight.cli.common import fail
from freight.errors import FreightError
from freight.service import batch_client
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


def call_server(base_url: str, api_key: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """The server's answer; a failed call ends the command (`refused`)."""
    try:
        return batch_client.BatchClient(base_url, api_key).call(method, path, **kwargs)
    except batch_client.ServerError as exc:
        refused(exc)


def refused(exc: batch_client.ServerError) -> NoReturn:
    """End the command with a message that says what to do next, and the exit code of
    freight.cli.main's table: 2 for a request the server refused as given (4xx but
    429), else 1 (unreachable, busy or failing)."""
    if exc.status is None:
        fail(exc.message, code=1)
    is_refused = 400 <= exc.status < 500 and exc.status != 429
    fail(f"HTTP {exc.status}: {exc.message}", code=2 if is_refused else 1)


def show(obj: Any, quiet: bool) -> None:
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
        obj = call_server(
            base_url,
            api_key,
            "POST",
            "/files",
            data={"purpose": purpose},
            files={"file": (path.name, fh, "application/jsonl")},
        )
    show(obj, quiet)


@files_app.command("list")
def files_list(base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """List files, newest first."""
    page = call_server(base_url, api_key, "GET", "/files")
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
    content = call_server(base_url, api_key, "GET", f"/files/{file_id}/content")
    output.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    err.print(f"wrote {output}")


@batches_app.command("create")
def batches_create(
    input_file_id: Annotated[
        str | None, typer.Option(help="An uploaded file with purpose batch.")
    ] = None,
    endpoint: Annotated[str, typer.Option(help="The endpoint every line uses.")] = (
        "/v1/chat/completions"
    ),
    window: Annotated[str, typer.Option(help="Completion window: 24h, or <n>s|m|h|d.")] = "24h",
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            help="Freight extension: higher runs first (default 0), up to the project's "
            "bound ([scheduler] max_batch_priority)."
        ),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            help="Build the batch from a table and a prompt (.csv, .tsv, .parquet, .jsonl "
            "records) instead of an uploaded file.",
            dir_okay=False,
            rich_help_panel=table_options.PANEL,
        ),
    ] = None,
    prompt: table_options.Prompt = None,
    prompt_file: table_options.PromptFile = None,
    system: table_options.System = None,
    model: table_options.Model = None,
    max_tokens: table_options.MaxTokens = None,
    temperature: table_options.Temperature = None,
    schema: table_options.Schema = None,
    choices: table_options.Choices = None,
    output_column: table_options.OutputColumn = None,
    id_column: table_options.IdColumn = None,
    input_format: table_options.Format = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the id.")] = False,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Create a batch from an uploaded file, or from a table and a prompt (--table).

    With --table, the request lines are built here, as `freight run` builds them (every
    option is checked before anything is uploaded), uploaded with purpose batch, and the
    batch is created; its metadata `freight_table` records the id and answer columns, so
    `freight batches wait ID --table TABLE -o OUT` can join the answers back.
    """
    pairs = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/red] --metadata expects KEY=VALUE, got {item!r}")
            raise typer.Exit(2)
        pairs[key] = value
    options = {
        "--prompt": prompt,
        "--prompt-file": prompt_file,
        "--system": system,
        "--model": model,
        "--max-tokens": max_tokens,
        "--temperature": temperature,
        "--schema": schema,
        "--choices": choices,
        "--output-column": output_column,
        "--id-column": id_column,
        "--format": input_format,
    }
    if table is None:
        given = [name for name, value in options.items() if value is not None]
        if given:
            fail(f"{', '.join(given)} build a batch from a table: give --table")
        if input_file_id is None:
            fail("give --input-file-id (an uploaded batch file) or --table (a table and a prompt)")
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": window}
        if pairs:
            body["metadata"] = pairs  # type: ignore[assignment]
        if priority is not None:
            body["priority"] = priority  # type: ignore[assignment]
        show(call_server(base_url, api_key, "POST", "/batches", json=body), quiet)
        return
    if input_file_id is not None:
        fail("--input-file-id and --table both say what the batch runs; give one")
    from freight.tables import prompts  # pyarrow and Jinja2: only a table's batch needs them

    if endpoint != prompts.ENDPOINT:
        fail(f"a table's batch uses {prompts.ENDPOINT}, not --endpoint {endpoint}")
    from freight.service import table_batches

    try:
        prepared = table_batches.prepare(
            table,
            prompt=table_options.read_prompt(prompt, prompt_file),
            input_format=input_format,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            id_column=id_column,
            output_column=output_column,
            schema_path=schema,
            choices=None if choices is None else choices.split(","),
        )
    except FreightError as exc:
        fail(exc)
    client = batch_client.BatchClient(base_url, api_key)
    try:
        submitted = table_batches.create(
            client, prepared, window=window, metadata=pairs, priority=priority
        )
    except batch_client.ServerError as exc:
        refused(exc)
    except FreightError as exc:
        fail(exc)
    for line in submitted.describe_not_sent():
        err.print(f"not sent: {line}", soft_wrap=True, markup=False)
    num_sent = submitted.num_rows - submitted.num_not_sent
    err.print(
        f"{num_sent} of {submitted.num_rows} rows sent as batch {submitted.batch['id']}",
        markup=False,
    )
    show(submitted.batch, quiet)


@batches_app.command("get")
def batches_get(batch_id: str, base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """Show one batch."""
    show(call_server(base_url, api_key, "GET", f"/batches/{batch_id}"), quiet=False)


@batches_app.command("list")
def batches_list(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """List batches, newest first."""
    page = call_server(base_url, api_key, "GET", "/batches", params={"limit": limit})
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
    show(call_server(base_url, api_key, "POST", f"/batches/{batch_id}/cancel"), quiet=False)


@batches_app.command("wait")
def batches_wait(
    batch_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Download the output file here; with --table, write the answered table here "
            "(.csv, .tsv, .parquet, .jsonl).",
        ),
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Download the error file here (default: into OUTPUT too)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            help="The table the batch was created from (batches create --table): join the "
            "answers back to its rows. The id and answer columns come from the batch (its "
            "metadata and request lines), so no other option of create is needed.",
            dir_okay=False,
            rich_help_panel=table_options.PANEL,
        ),
    ] = None,
    usage: table_options.Usage = False,
    input_format: table_options.Format = None,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Wait for a batch to end, with a progress bar; exit 0 completed, 3 with errors, else 1.

    With -o, its error lines follow its result lines there, as `freight run` writes them,
    unless --errors names their own file. With --table, the answered table goes to -o:
    every row of the table in order, the answer columns and `error`, as `freight run`
    writes it; exit 3 when a row has an error.
    """
    if table is None:
        given = [
            name
            for name, value in {"--usage": usage or None, "--format": input_format}.items()
            if value is not None
        ]
        if given:
            fail(f"{', '.join(given)} apply to a table: give --table")
    else:
        if output is None:
            fail("--table joins the answers to the table's rows: give -o for the answered table")
        if errors is not None:
            fail("with --table, a row's error goes into its error column: leave out --errors")
    client = batch_client.BatchClient(base_url, api_key)
    try:
        batch = client.wait(batch_id, poll_seconds=interval, console=err)
        if table is not None and output is not None:
            _join_table(client, batch, table, output, input_format=input_format, usage=usage)
        else:
            contents: dict[Path, bytes] = {}
            for file_id, path in (
                (batch.get("output_file_id"), output),
                (batch.get("error_file_id"), errors or output),
            ):
                if file_id and path is not None:
                    content = client.call("GET", f"/files/{file_id}/content")
                    contents[path] = contents.get(path, b"") + content
            for path, content in contents.items():
                path.write_bytes(content)
                err.print(f"wrote {path}")
    except batch_client.ServerError as exc:
        refused(exc)
    show(batch, quiet=False)
    if batch["status"] != BatchStatus.COMPLETED:
        raise typer.Exit(1)
    raise typer.Exit(3 if batch["request_counts"]["failed"] else 0)


def _join_table(
    client: batch_client.BatchClient,
    batch: dict[str, Any],
    table: Path,
    output: Path,
    *,
    input_format: str | None,
    usage: bool,
) -> NoReturn:
    """Write the answered table of an ended batch, and exit: 0 every row answered, 3 some
    rows failed, 1 the batch did not complete."""
    from freight.service import table_batches

    if batch["status"] == BatchStatus.FAILED:
        show(batch, quiet=False)
        err.print(f"[red]error:[/red] batch {batch['id']} failed: it has no answers to join")
        raise typer.Exit(1)
    try:
        collected = table_batches.collect(
            client, batch, table, output, input_format=input_format, usage=usage
        )
    except batch_client.ServerError as exc:
        refused(exc)
    except FreightError as exc:
        fail(exc)
    num_answered = collected.num_rows - collected.num_failed
    err.print(
        f"{batch['status']}: {num_answered} rows answered, {collected.num_failed} failed "
        f"-> {output}",
        markup=False,
        soft_wrap=True,
    )
    show(batch, quiet=False)
    if batch["status"] != BatchStatus.COMPLETED:
        raise typer.Exit(1)
    raise typer.Exit(3 if collected.num_failed else 0)


def models(base_url: BaseUrl = DEFAULT_BASE, api_key: ApiKey = None) -> None:
    """List the models the server offers, with the device each started engine runs on;
    an alias with its model's."""
    root = base_url.rstrip("/").removesuffix("/v1")
    health = call_server(root, api_key, "GET", "/health")
    devices, aliases = health.get("engine_devices", {}), health.get("model_aliases", {})
    for card in call_server(base_url, api_key, "GET", "/models")["data"]:
        name = aliases.get(card["id"], card["id"])
        alias_of = f" (alias of {name})" if name != card["id"] else ""
        out.print(f"{card['id']}\t{devices.get(name, 'not started')}{alias_of}", highlight=False)
