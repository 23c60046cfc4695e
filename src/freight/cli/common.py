"""What every `freight` command shares: the error console, --home, settings and logging."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from freight import config
from freight.errors import FreightError

err = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Freight's data folder (default $FREIGHT_HOME or ./.freight)."),
]


def load_settings(home: Path | None, **overrides: object) -> config.Settings:
    if home is not None:
        os.environ["FREIGHT_HOME"] = str(home)  # also locates freight.toml
    try:
        return config.load(**overrides)
    except FreightError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
