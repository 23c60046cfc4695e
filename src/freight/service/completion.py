"""A batch's expected completion time: at create, and recomputed while it runs.

`initial_completion_at` estimates a new batch from its line count at the history's
tokens per request of its first line's model (no tokenizing: creating stays cheap); a
batch with no history to go on starts with none. While the batch runs,
`live_completion_at` recomputes it on every read (the API's retrieve and list, the
dashboard) from its open requests at its own tokens per request so far, after the open
work of the batches ahead of it, at the model's measured batch throughput of the last
hour (usage/forecast.py): two small queries, on the in-progress batches and on the last
hour's engine_usage rows. Once the
batch has ended, the estimate made at create stands, to compare with when it ended.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from freight.engines.base import Task
from freight.protocol import endpoints
from freight.store import batches, usage
from freight.store.statuses import BatchStatus
from freight.usage import forecast

# A running batch is timed at the last hour's throughput (the conditions it runs in, and
# few engine_usage rows to add up on every read), else at the longer window's.
LIVE_WINDOWS = (3600, forecast.RATE_WINDOW_SECONDS)


@dataclass(frozen=True)
class QueuePlace:
    """Where the estimated work would join the queue: its deadline, and its own batch
    (when estimating a batch that exists) so that it does not count itself as ahead."""

    expires_at: int
    created_ns: int
    batch_id: str | None = None
    priority: int = 0


def rate_and_queue(
    conn: sa.Connection,
    model: str,
    task: Task,
    place: QueuePlace,
    now: float,
    *,
    windows: tuple[int, ...] = (forecast.RATE_WINDOW_SECONDS,),
) -> tuple[forecast.Throughput, forecast.QueuedAhead]:
    """The model's measured batch throughput (over the first of `windows`, in seconds
    back from `now`, that has any), and the open work that runs before `place`."""
    rate = forecast.Throughput(None, 0.0, 0)
    for window in windows:
        rate = forecast.throughput(usage.batch_engine_work(conn, model, since=now - window), task)
        if rate.tokens_per_second is not None:
            break
    ahead = [
        b
        for b in usage.open_batches(conn, model)
        if b.id != place.batch_id
        and forecast.runs_before(b, place.expires_at, place.created_ns, place.priority)
    ]

    @functools.cache
    def mean_for(endpoint_url: str) -> float | None:
        history = usage.request_history(conn, model, endpoint_url)
        return forecast.per_request(history, task).mean_tokens

    return rate, forecast.queued_ahead(ahead, task, mean_for)


def initial_completion_at(
    conn: sa.Connection,
    *,
    model: str | None,
    endpoint_url: str,
    num_requests: Callable[[], int],
    expires_at: int,
    created_ns: int,
    now: float,
    priority: int = 0,
) -> int | None:
    """A new batch's expected completion: `num_requests()` (called only when there is a
    history: it may read the whole file) at the history's tokens per request of `model`
    (its first line's), after the work ahead of it. None without a history or a measured
    rate: the reads of the running batch will know more."""
    endpoint = endpoints.ENDPOINTS.get(endpoint_url)
    if model is None or endpoint is None:
        return None
    mean = forecast.per_request(
        usage.request_history(conn, model, endpoint_url), endpoint.task
    ).mean_tokens
    if mean is None:
        return None
    place = QueuePlace(expires_at, created_ns, priority=priority)
    rate, ahead = rate_and_queue(conn, model, endpoint.task, place, now)
    if rate.tokens_per_second is None:
        return None
    seconds = forecast.seconds_for(num_requests() * mean + ahead.num_tokens, rate)
    return forecast.completion_at(now, seconds)


def live_completion_at(conn: sa.Connection, batch: batches.BatchRecord, now: float) -> int | None:
    """A running batch's expected completion from its open requests, at its own tokens
    per request so far (the history's before it has any), after the work ahead of it.
    Otherwise (validating, ended, or nothing to go on) what was stored at create."""
    endpoint = endpoints.ENDPOINTS.get(batch.endpoint)
    if batch.status != BatchStatus.IN_PROGRESS or batch.model is None or endpoint is None:
        return batch.expected_completion_at
    if batch.num_open == 0:
        return int(now)  # finalizing any moment
    running = usage.OpenBatch(
        batch.id,
        batch.endpoint,
        batch.expires_at,
        batch.created_ns,
        batch.num_open,
        batch.num_run_succeeded,
        batch.input_tokens,
        batch.output_tokens,
        batch.priority,
    )
    fallback = None
    if not batch.num_run_succeeded:
        history = usage.request_history(conn, batch.model, batch.endpoint)
        fallback = forecast.per_request(history, endpoint.task).mean_tokens
    mean = forecast.batch_mean(running, endpoint.task, fallback)
    if mean is None:
        return batch.expected_completion_at
    place = QueuePlace(batch.expires_at, batch.created_ns, batch.id, batch.priority)
    rate, ahead = rate_and_queue(conn, batch.model, endpoint.task, place, now, windows=LIVE_WINDOWS)
    seconds = forecast.seconds_for(batch.num_open * mean + ahead.num_tokens, rate)
    if seconds is None:
        return batch.expected_completion_at
    return forecast.completion_at(now, seconds)


def with_live_completion(conn: sa.Connection, batch: batches.BatchRecord) -> batches.BatchRecord:
    """The batch with its expected completion as of now (see live_completion_at)."""
    if batch.status != BatchStatus.IN_PROGRESS:
        return batch
    value = live_completion_at(conn, batch, time.time())
    return dataclasses.replace(batch, expected_completion_at=value)


def with_live_completions(
    conn: sa.Connection, records: list[batches.BatchRecord]
) -> list[batches.BatchRecord]:
    return [with_live_completion(conn, r) for r in records]
