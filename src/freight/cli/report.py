"""`freight report`: usage, cost and savings per day, project and model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from freight.cli.common import HomeOption, err, fail, open_store


def report_command(
    days: Annotated[int, typer.Option(min=1, help="The last N UTC days, today included.")] = 30,
    since: Annotated[
        str | None, typer.Option(help="Start day YYYY-MM-DD (UTC) instead of --days.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's batches.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw throughput and cost over time into this PNG.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Usage, cost, savings and measured $/1M tokens per day, project and model."""
    import calendar
    import time

    from freight.usage import report

    if as_json and as_csv:
        fail("choose one of --json and --csv")
    now = int(time.time())
    if since is not None:
        try:
            start = calendar.timegm(time.strptime(since, "%Y-%m-%d"))
        except ValueError:
            fail(f"--since expects YYYY-MM-DD, got {since!r}")
    else:
        start = now - now % 86400 - (days - 1) * 86400
    with open_store(home) as (settings, db):
        result = report.build(db, settings, since=start, project=project)
        if as_json:
            print(report.to_json(result))
        elif as_csv:
            print(report.to_csv(result), end="")
        else:
            Console().print(report.to_table(result))
        if plot is not None:
            from freight.usage import plot as plotting

            plotting.plot(db, settings, plot, since=start, until=now + 1, project=project)
            err.print(f"wrote {plot}")
