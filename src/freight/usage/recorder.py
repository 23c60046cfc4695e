"""The usage recorder: adds what the engine meter accrued to the store every few seconds.

Each process that runs engines (`freight serve`, `freight worker`) has one, writing its
own `engine_usage` rows (keyed by node), so processes never contend for a row. A write
that fails is kept and added to the next one: metered time is never dropped quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from typing import Any

from freight.engines.metering import EngineMeter
from freight.store import usage
from freight.store.db import Database

log = logging.getLogger(__name__)


def node_name() -> str:
    """This process, as engine_usage rows name it."""
    return f"{socket.gethostname()}-{os.getpid()}"


class UsageRecorder:
    """Periodically moves `meter`'s unrecorded periods into the store."""

    def __init__(self, db: Database, meter: EngineMeter, *, every_seconds: float) -> None:
        self.db = db
        self.meter = meter
        self.every_seconds = every_seconds
        self.node = node_name()
        self._unwritten: list[dict[str, Any]] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Record every `every_seconds` until `stop`, then once more."""
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_seconds)
                await self.record()
        finally:
            await self.record()

    async def record(self) -> None:
        self.meter.sample()
        rows = self._unwritten + [
            {
                "model": delta.model,
                "kind": delta.kind,
                "period_start": delta.period_start,
                **dataclasses.asdict(delta.usage),
            }
            for delta in self.meter.take_unrecorded()
        ]
        self._unwritten = []
        if not rows:
            return
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception:
            log.exception("could not record engine usage; will add it to the next write")
            self._unwritten = rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self.db.write() as conn:
            usage.record_engine_usage(conn, self.node, rows)
