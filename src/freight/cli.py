"""The `freight` command: serve, worker, run, and the client commands (files, batches, models).

Exit codes: 0 success; 1 the work failed (a batch failed validation, expired, was
cancelled, or a server call failed); 2 bad arguments or configuration; 3 the batch
finished but some requests have error lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from freight import client_cli, config, keys_cli, webhooks_cli
from freight.errors import FreightError

app = typer.Typer(
    help="Freight: batch inference on your own models, with the OpenAI and Anthropic APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(client_cli.files_app, name="files")
app.add_typer(client_cli.batches_app, name="batches")
app.command("models")(client_cli.models)
app.add_typer(keys_cli.keys_app, name="keys")
app.add_typer(webhooks_cli.webhooks_app, name="webhooks")

err = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Freight's data folder (default $FREIGHT_HOME or ./.freight)."),
]


def _settings(home: Path | None, **overrides: object) -> config.Settings:
    if home is not None:
        os.environ["FREIGHT_HOME"] = str(home)  # also locates freight.toml
    try:
        return config.load(**overrides)
    except FreightError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1; IPv6: ::1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: HomeOption = None,
    worker: Annotated[bool, typer.Option(help="Run the batch worker in this process.")] = True,
    preload: Annotated[
        bool, typer.Option(help="Start the default model's engine at startup.")
    ] = True,
) -> None:
    """Run the HTTP API (and, by default, the batch worker) until SIGTERM or Ctrl-C."""
    from freight.api import server
    from freight.api.app import create_app
    from freight.service import Service

    settings = _settings(home, host=host, port=port)
    _logging(verbose=True)
    svc = Service(settings, with_worker=worker)
    if not svc.keys.is_enabled():
        if not keys_cli.is_loopback(settings.host):
            svc.db.dispose()
            err.print(
                f"[red]error:[/red] refusing to listen on {settings.host} without API keys: "
                "anyone who can reach it could use it. Create a key first with "
                "`freight keys create --project NAME`, or serve on 127.0.0.1."
            )
            raise typer.Exit(2)
        err.print(
            "No API keys: single-user mode, listening on loopback only. To serve a team, "
            "create keys with `freight keys create --project NAME`."
        )
    app_ = create_app(svc, preload=[settings.default_model] if preload else None)
    base_url = f"http://{server.url_host(settings.host)}:{settings.port}"
    err.print(f"Freight {settings.home.resolve()} serving on {base_url}/v1")
    server.serve(app_, settings)


@app.command()
def worker(home: HomeOption = None) -> None:
    """Run only the batch worker against the store (another process serves the API)."""
    from freight.service import Service
    from freight.worker.usage import UsageRecorder
    from freight.worker.webhooks import WebhookSender

    settings = _settings(home)
    _logging(verbose=True)

    async def main() -> None:
        svc = Service(settings)
        assert svc.worker is not None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_or_exit, stop, sig)
        recorder = UsageRecorder(
            svc.db, svc.engines.meter, every_seconds=settings.metrics.usage_record_seconds
        )
        recording = asyncio.create_task(recorder.run(stop))
        sending = asyncio.create_task(WebhookSender(settings.webhooks, svc.db).run(stop))
        try:
            await svc.worker.run(stop)
        finally:
            stop.set()
            await recording
            await sending
            await svc.close()

    asyncio.run(main())


def _stop_or_exit(stop: asyncio.Event, sig: signal.Signals) -> None:
    """First signal: drain and stop (api/server.py has the contract). Second: exit now;
    unreleased leases expire and another worker runs those requests."""
    if stop.is_set():
        logging.getLogger(__name__).warning("second %s: exiting now", sig.name)
        os._exit(1)
    logging.getLogger(__name__).info("%s: finishing in-flight work, then exiting", sig.name)
    stop.set()


@app.command()
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
    from freight import offline

    settings = _settings(home)
    _logging(verbose)
    try:
        code = offline.run_file(
            settings, input_path, output, errors, endpoint, console=err, ray_address=ray
        )
    except FreightError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def report(
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

    from freight import report as usage_report
    from freight.store.db import open_database

    if as_json and as_csv:
        err.print("[red]error:[/red] choose one of --json and --csv")
        raise typer.Exit(2)
    now = int(time.time())
    if since is not None:
        try:
            start = calendar.timegm(time.strptime(since, "%Y-%m-%d"))
        except ValueError:
            err.print(f"[red]error:[/red] --since expects YYYY-MM-DD, got {since!r}")
            raise typer.Exit(2) from None
    else:
        start = now - now % 86400 - (days - 1) * 86400
    settings = _settings(home)
    db = open_database(settings.sqlalchemy_url, settings.home)
    try:
        result = usage_report.build(db, settings, since=start, project=project)
        if as_json:
            print(usage_report.to_json(result))
        elif as_csv:
            print(usage_report.to_csv(result), end="")
        else:
            Console().print(usage_report.to_table(result))
        if plot is not None:
            from freight import report_plot

            report_plot.plot(db, settings, plot, since=start, until=now + 1, project=project)
            err.print(f"wrote {plot}")
    finally:
        db.dispose()


def optional_value(argv: list[str], option: str, default: str) -> list[str]:
    """Let `option` stand alone: `--ray` at the end or before another option means
    `--ray=default` (typer options otherwise always take a value)."""
    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == option and (following is None or following.startswith("-")):
            arg = f"{option}={default}"
        out.append(arg)
    return out


def main() -> None:
    try:
        app(args=optional_value(sys.argv[1:], "--ray", "local"))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
