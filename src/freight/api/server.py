"""Running the app under uvicorn with Freight's connection limits and shutdown contract.

The limits (`[server]`, api/slow_clients.py) apply wherever the app is served:
`uvicorn_config` builds the one Config used by `freight serve` and the tests.

The shutdown contract (first signal drains, a second exits at once) is
`service.runtime.on_stop_signal`, the same for `freight worker`.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from freight.api import slow_clients
from freight.config import Settings
from freight.service import access
from freight.service.runtime import STOP_SIGNALS, on_stop_signal

log = logging.getLogger(__name__)
_FILES_BESIDES_CONNECTIONS = 1024  # the store, blobs, model files, engine pipes, logs


class FreightServer(uvicorn.Server):
    """uvicorn.Server that exits 0 after a graceful stop and at once on a second signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        on_stop_signal(sig, stopping=self.should_exit, stop=self._stop)

    def _stop(self) -> None:
        self.should_exit = True


def uvicorn_config(
    app: ASGIApp,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn Config `freight serve` runs `app` with (the tests' live server too).

    It carries the `[server]` limits on connections (api/slow_clients.py): request head
    size and deadline, body stall timeout, and the cap on open connections.
    """
    limits = settings.server
    return uvicorn.Config(
        slow_clients.BodyTimeout(app, limits.body_timeout_seconds),
        host=bind_address(host or settings.host),
        port=settings.port if port is None else port,
        http=slow_clients.protocol_class(limits),
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.worker.drain_seconds) + 5,
    )


def bind_address(host: str) -> str:
    """`host` as the socket layer wants it: an IPv6 address without URL brackets."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def url_host(host: str) -> str:
    """`host` as a URL wants it: an IPv6 address in brackets (`http://[::1]:8000`)."""
    address = bind_address(host)
    return f"[{address}]" if ":" in address else address


def raise_open_file_limit(max_connections: int) -> None:
    """Make room for `max_connections` sockets besides the files the server opens.

    Each connection is a file descriptor; a common default soft limit is 1024, below
    the default connection cap plus the store, model files and engine pipes.
    """
    needed = max_connections + _FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "open file limit %d is low for [server] max_connections = %d; raise it "
            "(ulimit -n) to at least %d or lower max_connections",
            target,
            max_connections,
            needed,
        )


def serve(app: FastAPI, settings: Settings) -> None:
    """Run `app` under uvicorn until a signal, with Freight's limits and shutdown contract."""
    config = uvicorn_config(app, settings)
    raise_open_file_limit(settings.server.max_connections)
    access.redact_logs()  # uvicorn has configured its log handlers by now
    FreightServer(config).run()
