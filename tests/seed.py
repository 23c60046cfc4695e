"""Seeding a store directly (batches, finished requests, metered engine time) for tests of
reports and pages, so their numbers are known exactly without running an engine."""

from __future__ import annotations

import json
from typing import Any

from freight import ids
from freight.store import batch_requests, batches, usage
from freight.store.db import Database
from freight.store.statuses import RequestStatus

DAY1 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY2 = DAY1 + 86_400


def add_batch(
    db: Database,
    *,
    project: str,
    model: str,
    created_at: int,
    finished: list[tuple[float, int, int]] = (),  # type: ignore[assignment]
    num_errored: int = 0,
    status: str = "completed",
    batch_id: str | None = None,
) -> str:
    """A batch whose requests succeeded at (finished_at, input, output tokens), + errors."""
    batch_id = batch_id or ids.new_id("batch_")
    ended = int(max((f[0] for f in finished), default=created_at))
    num_input = sum(f[1] for f in finished)
    num_output = sum(f[2] for f in finished)
    with db.write() as conn:
        batches.insert(
            conn,
            id=batch_id,
            project=project,
            api="openai",
            endpoint="/v1/chat/completions",
            input_file_id="file-seed",
            completion_window="24h",
            status=status,
            model=model,
            created_at=created_at,
            created_ns=created_at * 1_000_000_000 + len(batch_id),
            expires_at=created_at + 86_400,
            in_progress_at=created_at,
            completed_at=ended if status == "completed" else None,
            num_total=len(finished) + num_errored,
            num_succeeded=len(finished),
            num_errored=num_errored,
            input_tokens=num_input,
            output_tokens=num_output,
        )
        rows: list[dict[str, Any]] = []
        outcomes = [(f, RequestStatus.SUCCEEDED) for f in finished]
        outcomes += [((created_at + 1.0, 0, 0), RequestStatus.ERRORED)] * num_errored
        for line, ((at, num_in, num_out), status_) in enumerate(outcomes, 1):
            rows.append(
                {
                    "id": ids.new_request_id(),
                    "batch_id": batch_id,
                    "line": line,
                    "custom_id": f"r{line}",
                    "url": "/v1/chat/completions",
                    "body": json.dumps({"model": model}),
                    "status": status_,
                    "attempts": 1,
                    "status_code": 200 if status_ == RequestStatus.SUCCEEDED else 400,
                    "input_tokens": num_in,
                    "cached_tokens": 0,
                    "output_tokens": num_out,
                    "finished_at": at,
                }
            )
        batch_requests.insert_many(conn, rows)
    return batch_id


def add_engine_time(
    db: Database,
    *,
    model: str,
    kind: str,
    period_start: int,
    seconds: float,
    num_requests: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    node: str = "seed-node",
) -> None:
    with db.write() as conn:
        usage.record_engine_usage(
            conn,
            node,
            [
                {
                    "model": model,
                    "kind": kind,
                    "period_start": period_start,
                    "seconds": seconds,
                    "num_requests": num_requests,
                    "input_tokens": input_tokens,
                    "cached_tokens": 0,
                    "output_tokens": output_tokens,
                }
            ],
        )


def seed_two_days(db: Database) -> None:
    """The store the report tests read (their expected numbers are worked out there)."""
    add_batch(
        db,
        project="alpha",
        model="m1",
        created_at=DAY1 + 3600,
        finished=[(DAY1 + 3700.0, 1000, 500)] * 3,
        num_errored=1,
    )
    add_batch(
        db,
        project="beta",
        model="m1",
        created_at=DAY1 + 7200,
        finished=[(DAY1 + 7300.0, 2000, 1000)] * 2 + [(DAY2 + 100.0, 1000, 1000)],
    )
    add_engine_time(db, model="m1", kind="batch", period_start=DAY1 + 3660, seconds=100)
    add_engine_time(db, model="m1", kind="idle", period_start=DAY1 + 3660, seconds=300)
    add_engine_time(
        db,
        model="m1",
        kind="realtime",
        period_start=DAY1 + 7260,
        seconds=50,
        num_requests=10,
        input_tokens=5000,
        output_tokens=2500,
    )
    add_engine_time(db, model="m1", kind="batch", period_start=DAY2 + 60, seconds=20)
