"""What every `freight` command shares: the error console, --home, settings, the store
and logging."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from freight import config
from freight.errors import FreightError
from freight.store.db import Database, open_database

err = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Freight's data folder (default $FREIGHT_HOME or ./.freight)."),
]


def fail(problem: FreightError | str, code: int = 2) -> NoReturn:
    """Print the problem as the user's (no traceback; on one line, for grep) and exit
    with `code` (2: bad arguments or configuration, see freight.cli.main)."""
    message = problem.message if isinstance(problem, FreightError) else problem
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code) from None


def load_settings(home: Path | None, **overrides: object) -> config.Settings:
    if home is not None:
        os.environ["FREIGHT_HOME"] = str(home)  # also locates freight.toml
    try:
        return config.load(**overrides)
    except FreightError as exc:
        fail(exc)


@contextmanager
def open_store(
    home: Path | None, *, may_create: bool = False
) -> Iterator[tuple[config.Settings, Database]]:
    """The settings and the store, for the commands that work on the store directly
    (`keys`, `webhooks`, `report`); the store's connections are closed on the way out.

    A home without a store is refused (a mistyped --home would otherwise get a new,
    empty one) unless `may_create`: then the new store is announced."""
    settings = load_settings(home)
    missing = missing_store(settings)
    if missing is not None and not may_create:
        fail(
            f"{missing} holds no Freight store: check --home (or $FREIGHT_HOME), or create "
            f"one there with `freight serve --home {missing}`"
        )
    try:
        db = open_database(settings.sqlalchemy_url, settings.home)
    except FreightError as exc:
        fail(exc)
    if missing is not None:
        err.print(f"Created a new Freight store in {missing}.", highlight=False, soft_wrap=True)
    try:
        yield settings, db
    finally:
        db.dispose()


def missing_store(settings: config.Settings) -> Path | None:
    """The home, if its store is a SQLite file that does not exist yet (a `database_url`
    elsewhere is not this home's to judge)."""
    if settings.database_url is not None or (settings.home / "freight.db").exists():
        return None
    return settings.home.resolve()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
