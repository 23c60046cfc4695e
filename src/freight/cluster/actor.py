"""EngineActor: one engine per Ray actor, running requests exactly as a worker does.

Ray Data calls the actor with blocks of leased requests (`map_batches`); each request
goes through worker/runner.py, the same code a worker runs, so results have the same
shape, the same per-line errors and the same token counts. The actor keeps one event
loop in a thread of its own: Ray Data keeps several calls in flight per actor
(`max_concurrent_batches`), and their requests all meet in that loop's engine, whose
continuous batch so stays full across blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import pyarrow as pa

from freight.config import Settings
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.store import batch_requests
from freight.store.statuses import RequestStatus
from freight.worker import runner

log = logging.getLogger(__name__)

TRANSIENT = "transient"  # status of a result the driver puts back in the queue
OUTCOME_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("batch_id", pa.string()),
        ("status", pa.string()),
        ("status_code", pa.int64()),
        ("response_json", pa.string()),
        ("error_json", pa.string()),
        ("input_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("reason", pa.string()),
    ]
)


class EngineActor:
    """A pool of one model's engines (started on first use) inside one Ray actor."""

    def __init__(self, settings_json: str) -> None:
        settings = Settings.model_validate_json(settings_json)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._engines = EnginePool(settings, Registry(settings))
        self._shared = runner.SharedResults()

    def __call__(self, block: pa.Table) -> pa.Table:
        claimed = [batch_requests.ClaimedRequest(**row) for row in block.to_pylist()]
        future = asyncio.run_coroutine_threadsafe(self._run(claimed), self._loop)
        return pa.Table.from_pylist(future.result(), schema=OUTCOME_SCHEMA)

    async def _run(self, claimed: list[batch_requests.ClaimedRequest]) -> list[dict[str, Any]]:
        results = await asyncio.gather(
            *(runner.execute(c, self._engines, self._shared) for c in claimed)
        )
        rows: list[dict[str, Any]] = []
        for request, result in zip(claimed, results, strict=True):
            if isinstance(result, runner.Transient):
                rows.append(
                    {
                        "request_id": request.id,
                        "batch_id": request.batch_id,
                        "status": TRANSIENT,
                        "reason": result.reason,
                    }
                )
            else:
                rows.append({**vars(result), "reason": None})
        return rows

    def __del__(self) -> None:
        # Ray Data calls this when it retires the actor: stop the engine's processes.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._engines.shutdown(), self._loop).result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)


def outcome(row: dict[str, Any]) -> batch_requests.Outcome:
    """An actor's result row back as the Outcome the store records."""
    return batch_requests.Outcome(
        row["request_id"],
        row["batch_id"],
        RequestStatus(row["status"]),
        status_code=row["status_code"],
        response_json=row["response_json"],
        error_json=row["error_json"],
        input_tokens=row["input_tokens"] or 0,
        cached_tokens=row["cached_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
    )
