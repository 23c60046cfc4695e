"""`freight batches watch` and `freight batches retry`: control over a batch while it runs
and after it ends (Freight extensions of the API: service/watch.py, service/retry.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freight.cli.client import (
    DEFAULT_BASE,
    ApiKey,
    BaseUrl,
    call_server,
    err,
    refused,
    show,
)
from freight.cli.client import batches_app as batches_app  # main.py adds it, with these
from freight.cli.common import fail
from freight.errors import FreightError
from freight.service import batch_client, watch


@batches_app.command("watch")
def batches_watch(
    batch_id: str,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Append result lines here as they land (output and error lines, in the "
            "order they finished). Run again with the same -o to continue where it stopped.",
            dir_okay=False,
        ),
    ],
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Follow a batch's result lines into a file until it ends, with a progress bar; exit 0
    completed, 3 with error lines, else 1.

    Its position is kept beside the file (OUTPUT.cursor), so a watch that was killed
    continues, without a line twice or missing, when started again with the same -o.
    """
    client = batch_client.BatchClient(base_url, api_key)
    try:
        batch, position = watch.follow(client, batch_id, output, poll_seconds=interval, console=err)
    except batch_client.ServerError as exc:
        refused(exc)
    except FreightError as exc:
        fail(exc)
    err.print(
        f"{batch['status']}: {position.num_lines} lines -> {output}", markup=False, soft_wrap=True
    )
    show(batch, quiet=False)
    raise typer.Exit(watch.exit_code(batch))


@batches_app.command("retry")
def batches_retry(
    batch_id: str,
    include_invalid: Annotated[
        bool,
        typer.Option(
            "--include-invalid",
            help="Also run again the requests refused as invalid (4xx lines); by default "
            "only cancelled, expired and server-side failures.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the id.")] = False,
    base_url: BaseUrl = DEFAULT_BASE,
    api_key: ApiKey = None,
) -> None:
    """Create a new batch of an ended batch's requests that did not succeed (same
    custom_ids, endpoint and window; metadata freight_retry_of names the original)."""
    body = {"include": ["invalid_request"] if include_invalid else []}
    show(call_server(base_url, api_key, "POST", f"/batches/{batch_id}/retry", json=body), quiet)
