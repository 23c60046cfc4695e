"""Running the app under uvicorn with Freight's shutdown contract.

First SIGTERM or SIGINT: stop accepting work, let in-flight requests finish for up to
`worker.drain_seconds`, give unfinished leases back, exit 0. A second signal exits at
once: nothing is lost even then, because unreleased leases expire and another worker
(or the next start) runs those requests again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from freight import auth

log = logging.getLogger(__name__)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class FreightServer(uvicorn.Server):
    """uvicorn.Server that exits 0 after a graceful stop and at once on a second signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning(
                "second %s: exiting now; unfinished requests will be re-run",
                signal.Signals(sig).name,
            )
            os._exit(1)
        log.info("%s: finishing in-flight work, then exiting", signal.Signals(sig).name)
        self.should_exit = True


def serve(app: FastAPI, host: str, port: int, drain_seconds: float) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(drain_seconds) + 5,
    )
    auth.redact_logs()  # uvicorn has configured its log handlers by now
    FreightServer(config).run()
