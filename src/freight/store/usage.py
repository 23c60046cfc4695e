"""Usage roll-ups: tokens delivered per project/model/time, metered engine time, gauges.

Two sources of truth, both in the store:
- what users got: succeeded request rows (their tokens, `finished_at`) joined to their
  batch (project, model); a batch's own totals are on its row (store/batches.py);
- what the engines did: `engine_usage` rows, minute periods of busy (batch, realtime) and
  idle seconds and tokens per model, added by each process's worker (usage/recorder.py).

Times are unix seconds; a bucket is `floor(t / bucket_seconds) * bucket_seconds` (UTC days
with 86400). Costs are not computed here: SQL sums tokens, freight.usage.pricing prices them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight.store.schema import batches, engine_usage, requests
from freight.store.statuses import BatchStatus, RequestStatus

DAY_SECONDS = 86400
_COUNTERS = ("seconds", "num_requests", "input_tokens", "cached_tokens", "output_tokens")


def bucket_of(conn: sa.Connection, column: Any, seconds: int) -> Any:
    """`floor(column / seconds)`, portably: SQLite's CAST truncates (all times are > 0)."""
    if conn.dialect.name == "sqlite":
        return sa.cast(column / seconds, sa.Integer)
    return sa.cast(sa.func.floor(column / seconds), sa.BigInteger)


# --- metered engine usage -------------------------------------------------------------------


def record_engine_usage(conn: sa.Connection, node: str, rows: list[dict[str, Any]]) -> None:
    """Add metered periods (model, kind, period_start + the counters) to `node`'s rows."""
    for row in rows:
        key = (
            (engine_usage.c.node == node)
            & (engine_usage.c.model == row["model"])
            & (engine_usage.c.kind == row["kind"])
            & (engine_usage.c.period_start == row["period_start"])
        )
        deltas = {name: engine_usage.c[name] + row[name] for name in _COUNTERS}
        if conn.execute(engine_usage.update().where(key).values(**deltas)).rowcount == 0:
            conn.execute(engine_usage.insert().values(node=node, **row))


@dataclass(frozen=True)
class EngineUsageRow:
    bucket_start: int
    model: str
    kind: str  # batch, realtime, idle
    seconds: float
    num_requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int


def engine_usage_by_bucket(
    conn: sa.Connection, *, since: float, until: float | None = None, bucket_seconds: int
) -> list[EngineUsageRow]:
    """Metered seconds and tokens per (bucket, model, kind), all nodes added up."""
    bucket = bucket_of(conn, engine_usage.c.period_start, bucket_seconds).label("bucket")
    query = (
        sa.select(
            bucket,
            engine_usage.c.model,
            engine_usage.c.kind,
            *(sa.func.sum(engine_usage.c[name]).label(name) for name in _COUNTERS),
        )
        .where(engine_usage.c.period_start >= int(since) - int(since) % 60)
        .group_by(bucket, engine_usage.c.model, engine_usage.c.kind)
        .order_by(bucket, engine_usage.c.model, engine_usage.c.kind)
    )
    if until is not None:
        query = query.where(engine_usage.c.period_start < until)
    return [
        EngineUsageRow(
            bucket_start=int(r.bucket) * bucket_seconds,
            model=r.model,
            kind=r.kind,
            seconds=float(r.seconds or 0),
            num_requests=int(r.num_requests or 0),
            input_tokens=int(r.input_tokens or 0),
            cached_tokens=int(r.cached_tokens or 0),
            output_tokens=int(r.output_tokens or 0),
        )
        for r in conn.execute(query)
    ]


# --- delivered work -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveredRow:
    """Succeeded batch requests of one project and model that finished in one bucket."""

    bucket_start: int
    project: str
    model: str | None
    num_requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    num_from_cache: int = 0  # of num_requests, answered by the result cache (no tokens)


def delivered_by_bucket(
    conn: sa.Connection,
    *,
    since: float,
    until: float | None = None,
    bucket_seconds: int,
    project: str | None = None,
) -> list[DeliveredRow]:
    """Batch requests that succeeded, per (bucket of finished_at, project, model)."""
    bucket = bucket_of(conn, requests.c.finished_at, bucket_seconds).label("bucket")
    query = (
        sa.select(
            bucket,
            batches.c.project,
            batches.c.model,
            sa.func.count().label("num_requests"),
            sa.func.sum(requests.c.input_tokens).label("input_tokens"),
            sa.func.sum(requests.c.cached_tokens).label("cached_tokens"),
            sa.func.sum(requests.c.output_tokens).label("output_tokens"),
            sa.func.count(requests.c.cached_from).label("num_from_cache"),
        )
        .select_from(requests.join(batches, batches.c.id == requests.c.batch_id))
        .where(requests.c.status == RequestStatus.SUCCEEDED, requests.c.finished_at >= since)
        .group_by(bucket, batches.c.project, batches.c.model)
        .order_by(bucket, batches.c.project, batches.c.model)
    )
    if until is not None:
        query = query.where(requests.c.finished_at < until)
    if project is not None:
        query = query.where(batches.c.project == project)
    return [
        DeliveredRow(
            bucket_start=int(r.bucket) * bucket_seconds,
            project=r.project,
            model=r.model,
            num_requests=int(r.num_requests),
            input_tokens=int(r.input_tokens or 0),
            cached_tokens=int(r.cached_tokens or 0),
            output_tokens=int(r.output_tokens or 0),
            num_from_cache=int(r.num_from_cache or 0),
        )
        for r in conn.execute(query)
    ]


@dataclass(frozen=True)
class BatchTotalsRow:
    """Batches of one project and model that ended (or, if still open, began) in one day."""

    day_start: int
    model: str | None
    num_batches: int
    num_succeeded: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    num_from_cache: int = 0  # of num_succeeded, answered by the result cache (no tokens)


def batch_days(
    conn: sa.Connection, *, since: float, project: str | None = None
) -> list[BatchTotalsRow]:
    """Batch totals per day and model (of one project, or all), newest day first.

    A batch counts on the day it ended (or began, while it runs). Reads only batch rows
    and their running totals, so it stays cheap however many requests the batches hold:
    the dashboard's cost page uses it.
    """
    when = sa.func.coalesce(
        batches.c.completed_at,
        batches.c.expired_at,
        batches.c.cancelled_at,
        batches.c.failed_at,
        batches.c.created_at,
    )
    day = bucket_of(conn, when, DAY_SECONDS).label("day")
    query = (
        sa.select(
            day,
            batches.c.model,
            sa.func.count().label("num_batches"),
            sa.func.sum(batches.c.num_succeeded).label("num_succeeded"),
            sa.func.sum(batches.c.input_tokens).label("input_tokens"),
            sa.func.sum(batches.c.cached_tokens).label("cached_tokens"),
            sa.func.sum(batches.c.output_tokens).label("output_tokens"),
            sa.func.sum(batches.c.num_from_cache).label("num_from_cache"),
        )
        .where(when >= since)
        .group_by(day, batches.c.model)
        .order_by(day.desc(), batches.c.model)
    )
    if project is not None:
        query = query.where(batches.c.project == project)
    return [
        BatchTotalsRow(
            day_start=int(r.day) * DAY_SECONDS,
            model=r.model,
            num_batches=int(r.num_batches),
            num_succeeded=int(r.num_succeeded or 0),
            input_tokens=int(r.input_tokens or 0),
            cached_tokens=int(r.cached_tokens or 0),
            output_tokens=int(r.output_tokens or 0),
            num_from_cache=int(r.num_from_cache or 0),
        )
        for r in conn.execute(query)
    ]


@dataclass(frozen=True)
class ThroughputPoint:
    bucket_start: int
    num_requests: int
    output_tokens: int


def batch_throughput(
    conn: sa.Connection, batch_id: str, *, bucket_seconds: int
) -> list[ThroughputPoint]:
    """Finished requests and output tokens of one batch per bucket of finish time."""
    bucket = bucket_of(conn, requests.c.finished_at, bucket_seconds).label("bucket")
    query = (
        sa.select(
            bucket,
            sa.func.count().label("num_requests"),
            sa.func.sum(requests.c.output_tokens).label("output_tokens"),
        )
        .where(requests.c.batch_id == batch_id, requests.c.finished_at.is_not(None))
        .group_by(bucket)
        .order_by(bucket)
    )
    return [
        ThroughputPoint(int(r.bucket) * bucket_seconds, int(r.num_requests), int(r.output_tokens))
        for r in conn.execute(query)
    ]


def batch_finish_span(conn: sa.Connection, batch_id: str) -> tuple[float, float] | None:
    """The first and last finish time of the batch's requests, if any finished."""
    row = conn.execute(
        sa.select(sa.func.min(requests.c.finished_at), sa.func.max(requests.c.finished_at)).where(
            requests.c.batch_id == batch_id
        )
    ).one()
    return None if row[0] is None else (float(row[0]), float(row[1]))


# --- gauges ---------------------------------------------------------------------------------


def num_requests_with_status(conn: sa.Connection, status: RequestStatus) -> int:
    """Requests in `status` across all batches (the queue depth, for `queued`)."""
    query = sa.select(sa.func.count()).where(requests.c.status == status)
    return int(conn.execute(query).scalar_one())


def batches_by_status(conn: sa.Connection) -> dict[BatchStatus, int]:
    query = sa.select(batches.c.status, sa.func.count()).group_by(batches.c.status)
    return {BatchStatus(status): int(n) for status, n in conn.execute(query).all()}


# --- history for estimates (service/estimate.py) ----------------------------------------------


@dataclass(frozen=True)
class RequestHistory:
    """What the succeeded requests of one model and endpoint, in every batch, added up to."""

    num_requests: int
    input_tokens: int
    output_tokens: int


def request_history(conn: sa.Connection, model: str, endpoint: str) -> RequestHistory:
    """Succeeded requests of `model` at `endpoint` and their tokens, all projects; those
    the result cache answered are left out (they have no tokens of their own).

    Read from the batches' running totals, not the request rows: one row per batch, so
    it stays cheap enough to run on every retrieve of a batch.
    """
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(batches.c.num_succeeded - batches.c.num_from_cache), 0),
            sa.func.coalesce(sa.func.sum(batches.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(batches.c.output_tokens), 0),
        ).where(batches.c.model == model, batches.c.endpoint == endpoint)
    ).one()
    return RequestHistory(int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class EngineWork:
    """Metered batch work of one model's engines: busy seconds and the tokens done in them."""

    seconds: float
    input_tokens: int
    output_tokens: int


def batch_engine_work(conn: sa.Connection, model: str, *, since: float) -> EngineWork:
    """The `batch` kind of `model`'s engine_usage rows since `since`, all nodes."""
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(engine_usage.c.seconds), 0),
            sa.func.coalesce(sa.func.sum(engine_usage.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(engine_usage.c.output_tokens), 0),
        ).where(
            engine_usage.c.model == model,
            engine_usage.c.kind == "batch",
            engine_usage.c.period_start >= int(since) - int(since) % 60,
        )
    ).one()
    return EngineWork(float(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class OpenBatch:
    """A running batch's place in the queue and what it has done so far."""

    id: str
    endpoint: str
    expires_at: int
    created_ns: int
    num_open: int
    num_succeeded: int  # run on the engine: the result cache's answers are left out
    input_tokens: int
    output_tokens: int
    priority: int = 0


def open_batches(conn: sa.Connection, model: str) -> list[OpenBatch]:
    """The in-progress batches of `model` with requests still open, in the worker's order:
    highest priority, then earliest deadline, first."""
    finished = (
        batches.c.num_succeeded
        + batches.c.num_errored
        + batches.c.num_cancelled
        + batches.c.num_expired
    )
    query = (
        sa.select(
            batches.c.id,
            batches.c.endpoint,
            batches.c.expires_at,
            batches.c.created_ns,
            (batches.c.num_total - finished).label("num_open"),
            (batches.c.num_succeeded - batches.c.num_from_cache).label("num_succeeded"),
            batches.c.input_tokens,
            batches.c.output_tokens,
            batches.c.priority,
        )
        .where(batches.c.status == BatchStatus.IN_PROGRESS, batches.c.model == model)
        .order_by(batches.c.priority.desc(), batches.c.expires_at, batches.c.created_ns)
    )
    return [
        OpenBatch(
            id=r.id,
            endpoint=r.endpoint,
            expires_at=int(r.expires_at),
            created_ns=int(r.created_ns),
            num_open=int(r.num_open),
            num_succeeded=int(r.num_succeeded),
            input_tokens=int(r.input_tokens),
            output_tokens=int(r.output_tokens),
            priority=int(r.priority),
        )
        for r in conn.execute(query)
        if r.num_open > 0
    ]
