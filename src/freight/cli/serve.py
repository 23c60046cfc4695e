"""`freight serve` (the API, and by default the worker) and `freight worker` (the worker alone)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from freight.cli import keys
from freight.cli.common import HomeOption, err, load_settings, setup_logging


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
    from freight.app import create_app
    from freight.service.runtime import Service

    settings = load_settings(home, host=host, port=port)
    setup_logging(verbose=True)
    svc = Service(settings, with_worker=worker)
    if not svc.keys.is_enabled():
        if not keys.is_loopback(settings.host):
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


def worker(home: HomeOption = None) -> None:
    """Run only the batch worker against the store (another process serves the API)."""
    from freight.service.runtime import STOP_SIGNALS, Service, on_stop_signal

    settings = load_settings(home)
    setup_logging(verbose=True)

    async def main() -> None:
        svc = Service(settings)
        stop = asyncio.Event()

        def on_signal(sig: int) -> None:
            on_stop_signal(sig, stopping=stop.is_set(), stop=stop.set)

        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await svc.run(stop)
        finally:
            await svc.close()

    asyncio.run(main())
