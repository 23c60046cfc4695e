"""Usage of flex-tier requests (worker/flex.py): per project, model and minute.

A flex request is a single request served like batch work and billed at the batch price
(`freight report` prices these rows). Its project is the requesting key's; a row per
(project, model, minute) is added to, never one per request.
"""

from __future__ import annotations

import sqlalchemy as sa

from freight.store import usage
from freight.store.schema import flex_usage

PERIOD_SECONDS = 60


def record_request(
    conn: sa.Connection,
    *,
    project: str,
    model: str,
    at: float,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
) -> None:
    """Add one finished flex request to its project's and model's minute."""
    period_start = int(at) - int(at) % PERIOD_SECONDS
    counts = {
        "input_tokens": input_tokens,
        "cached_tokens": cached_tokens,
        "output_tokens": output_tokens,
    }
    key = (
        (flex_usage.c.project == project)
        & (flex_usage.c.model == model)
        & (flex_usage.c.period_start == period_start)
    )
    deltas = {name: flex_usage.c[name] + value for name, value in counts.items()}
    deltas["num_requests"] = flex_usage.c.num_requests + 1
    if conn.execute(flex_usage.update().where(key).values(**deltas)).rowcount == 0:
        conn.execute(
            flex_usage.insert().values(
                project=project, model=model, period_start=period_start, num_requests=1, **counts
            )
        )


def by_bucket(
    conn: sa.Connection,
    *,
    since: float,
    until: float | None = None,
    bucket_seconds: int,
    project: str | None = None,
) -> list[usage.DeliveredRow]:
    """Flex requests served, per (bucket, project, model): delivered like batch work."""
    bucket = usage.bucket_of(conn, flex_usage.c.period_start, bucket_seconds).label("bucket")
    query = (
        sa.select(
            bucket,
            flex_usage.c.project,
            flex_usage.c.model,
            *(
                sa.func.sum(flex_usage.c[name]).label(name)
                for name in ("num_requests", "input_tokens", "cached_tokens", "output_tokens")
            ),
        )
        .where(flex_usage.c.period_start >= int(since) - int(since) % PERIOD_SECONDS)
        .group_by(bucket, flex_usage.c.project, flex_usage.c.model)
        .order_by(bucket, flex_usage.c.project, flex_usage.c.model)
    )
    if until is not None:
        query = query.where(flex_usage.c.period_start < until)
    if project is not None:
        query = query.where(flex_usage.c.project == project)
    return [
        usage.DeliveredRow(
            bucket_start=int(r.bucket) * bucket_seconds,
            project=r.project,
            model=r.model,
            num_requests=int(r.num_requests or 0),
            input_tokens=int(r.input_tokens or 0),
            cached_tokens=int(r.cached_tokens or 0),
            output_tokens=int(r.output_tokens or 0),
        )
        for r in conn.execute(query)
    ]
