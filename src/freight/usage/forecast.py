"""Forecasts from this deployment's own history: tokens per request, throughput, time to finish.

Pure: roll-ups of the store in (store/usage.py), numbers out; service/estimate.py reads
the store and says what each number rests on.

- **Tokens per request**: the mean over every succeeded request of the same model and
  endpoint. For text generation that is output tokens; embeddings generate nothing, so
  their work is the input tokens they read.
- **Throughput**: those tokens per second of the model's metered *batch* engine time
  over the last RATE_WINDOW_SECONDS (engine_usage rows, kind `batch`). Busy time covers
  prefill and decoding of everything that ran together, so it is the rate at which this
  deployment has actually turned batch work into tokens, at the concurrency it had.
- **Time to finish**: the work queued ahead of a batch (the open requests of the model's
  in-progress batches with an earlier deadline, each at its own batch's tokens per
  request so far) plus the batch's own, at that throughput. Real-time requests, which
  always go first, are not foreseen: a busy real-time hour makes batches later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from freight.engines.base import Task
from freight.store.usage import EngineWork, OpenBatch, RequestHistory

RATE_WINDOW_SECONDS = 7 * 86400
RATE_WINDOW_NAME = "7 days"


def work_tokens(task: Task, input_tokens: int, output_tokens: int) -> int:
    """The tokens that measure a request's work: generated ones, or read ones for embeddings."""
    return output_tokens if task == "generate" else input_tokens


@dataclass(frozen=True)
class PerRequest:
    """Tokens per request in the history; None when there is no history."""

    mean_tokens: float | None
    num_past_requests: int


def per_request(history: RequestHistory, task: Task) -> PerRequest:
    tokens = work_tokens(task, history.input_tokens, history.output_tokens)
    n = history.num_requests
    return PerRequest(tokens / n if n else None, n)


@dataclass(frozen=True)
class Throughput:
    """Tokens per second of metered batch engine time; None when none was metered."""

    tokens_per_second: float | None
    seconds: float
    num_tokens: int


def throughput(work: EngineWork, task: Task) -> Throughput:
    tokens = work_tokens(task, work.input_tokens, work.output_tokens)
    rate = tokens / work.seconds if work.seconds > 0 and tokens > 0 else None
    return Throughput(rate, work.seconds, tokens)


def expected_for(ceiling: int | None, mean: float | None) -> float | None:
    """Expected output tokens of one request with this ceiling (None: no known ceiling).

    The history's mean, but never more than the request's own ceiling (a history of long
    answers says nothing about a request capped at 8 tokens); with no history, its
    ceiling. None when it has neither.
    """
    if mean is None:
        return None if ceiling is None else float(ceiling)
    return mean if ceiling is None else min(mean, ceiling)


def expected_tokens(ceilings: Iterable[int | None], mean: float | None) -> int | None:
    """Expected output tokens of requests with these ceilings (`expected_for` each, added
    up and then rounded); None when one of them has neither a mean nor a ceiling."""
    total = 0.0
    for ceiling in ceilings:
        one = expected_for(ceiling, mean)
        if one is None:
            return None
        total += one
    return round(total)


@dataclass(frozen=True)
class QueuedAhead:
    """Open requests that run before a batch, and the tokens they are expected to take."""

    num_requests: int
    num_tokens: float


NOTHING_AHEAD = QueuedAhead(0, 0.0)


def batch_mean(batch: OpenBatch, task: Task, fallback: float | None) -> float | None:
    """A running batch's tokens per request: its own so far, else `fallback`."""
    if batch.num_succeeded:
        tokens = work_tokens(task, batch.input_tokens, batch.output_tokens)
        return tokens / batch.num_succeeded
    return fallback


def queued_ahead(
    running: Iterable[OpenBatch], task: Task, mean_for: Callable[[str], float | None]
) -> QueuedAhead:
    """The open work of `running` batches: each one's open requests at its own tokens per
    request so far, or at `mean_for(endpoint)` (the history's) before it has any."""
    num_requests, num_tokens = 0, 0.0
    for batch in running:
        mean = batch_mean(batch, task, mean_for(batch.endpoint))
        num_requests += batch.num_open
        num_tokens += batch.num_open * (mean or 0.0)
    return QueuedAhead(num_requests, num_tokens)


def runs_before(batch: OpenBatch, expires_at: int, created_ns: int, priority: int = 0) -> bool:
    """Whether `batch` is ahead in the worker's order: higher priority, then earlier
    deadline, then older (worker/scheduler.py; the share between projects aside)."""
    return (-batch.priority, batch.expires_at, batch.created_ns) < (
        -priority,
        expires_at,
        created_ns,
    )


def seconds_for(num_tokens: float, rate: Throughput) -> float | None:
    """How long `num_tokens` take at `rate`; None without a measured rate."""
    if rate.tokens_per_second is None:
        return None
    return num_tokens / rate.tokens_per_second


def completion_at(now: float, seconds: float | None) -> int | None:
    """The unix second by which work of `seconds` from `now` is expected to be done."""
    return None if seconds is None else math.ceil(now + seconds)
