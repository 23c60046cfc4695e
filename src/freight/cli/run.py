"""`freight run`: a batch file through the engine, offline, without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freight.cli.common import HomeOption, err, fail, load_settings, setup_logging
from freight.errors import FreightError


def run(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="Batch input file (JSONL).", exists=True, dir_okay=False, readable=True
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where result lines go.")],
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Error lines go here (default: into OUTPUT too)."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint every line must use (default: the first line's).")
    ] = None,
    home: HomeOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show engine logs.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Run on a Ray cluster: ADDRESS of its head (host:port, ray://..., 'auto'), "
            "or alone to start a local one. Engine actors: \\[ray] num_actors (freight.toml).",
        ),
    ] = None,
) -> None:
    """Run a batch file offline, without a server: same validation and line format as the API."""
    from freight.service import offline

    settings = load_settings(home)
    setup_logging(verbose)
    try:
        code = offline.run_file(
            settings, input_path, output, errors, endpoint, console=err, ray_address=ray
        )
    except FreightError as exc:
        fail(exc)
    raise typer.Exit(code)
