"""`freight report --plot FILE.png`: throughput and cost over time, drawn with matplotlib.

Top: tokens generated per second of wall time in each bucket, batch and real-time.
Bottom: cumulative cost of the batch work: at real-time list prices, as batch work (with
the discount), and what the engine time spent on it cost at `hardware_per_hour`.
The bucket is a minute, an hour or a day, whichever gives a readable number of points.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from freight.config import Settings
from freight.engines.metering import BATCH, REALTIME
from freight.store import usage
from freight.store.db import Database
from freight.usage import pricing


def bucket_for(span_seconds: float) -> int:
    if span_seconds <= 3 * 3600:
        return 60
    if span_seconds <= 4 * usage.DAY_SECONDS:
        return 3600
    return usage.DAY_SECONDS


def plot(
    db: Database,
    settings: Settings,
    path: Path,
    *,
    since: int,
    until: int,
    project: str | None = None,
) -> int:
    """Draw the chart into `path` (PNG); return the number of time buckets drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    prices = pricing.PriceBook(settings)
    with db.read() as conn:
        probe = usage.delivered_by_bucket(
            conn, since=since, until=until, bucket_seconds=usage.DAY_SECONDS, project=project
        )
        metered_days = usage.engine_usage_by_bucket(
            conn, since=since, until=until, bucket_seconds=usage.DAY_SECONDS
        )
        starts = [r.bucket_start for r in probe] + [r.bucket_start for r in metered_days]
        first = max(since, min(starts, default=since))
        last = min(until, max(starts, default=until) + usage.DAY_SECONDS)
        bucket = bucket_for(last - first)
        delivered = usage.delivered_by_bucket(
            conn, since=first, until=until, bucket_seconds=bucket, project=project
        )
        metered = usage.engine_usage_by_bucket(
            conn, since=first, until=until, bucket_seconds=bucket
        )
    output: dict[str, dict[int, int]] = {BATCH: defaultdict(int), REALTIME: defaultdict(int)}
    list_cost: dict[int, Decimal] = defaultdict(Decimal)
    batch_cost: dict[int, Decimal] = defaultdict(Decimal)
    for d in delivered:
        output[BATCH][d.bucket_start] += d.output_tokens
        cost = prices.cost(d.model, d.input_tokens, d.output_tokens)
        if cost is not None:
            list_cost[d.bucket_start] += cost.realtime
            batch_cost[d.bucket_start] += cost.batch
    hardware: dict[int, Decimal] = defaultdict(Decimal)
    for m in metered:
        if m.kind == REALTIME:
            output[REALTIME][m.bucket_start] += m.output_tokens
        if m.kind == BATCH and prices.hardware_per_hour is not None:
            hardware[m.bucket_start] += pricing.hardware_cost(prices.hardware_per_hour, m.seconds)
    active = set(output[BATCH]) | set(output[REALTIME]) | set(hardware)
    # every bucket from the first active one to the last, so quiet stretches show as zero
    buckets = list(range(min(active), max(active) + 1, bucket)) if active else []

    def when(start: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(start, dt.UTC)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    times = [when(b) for b in buckets]
    for kind, label in ((BATCH, "batch"), (REALTIME, "real-time")):
        rates = [output[kind].get(b, 0) / bucket for b in buckets]
        if any(rates):
            top.plot(times, rates, marker="o", markersize=3, label=label)
    top.set_ylabel("generated tokens / s")
    top.set_title(f"Freight throughput and cost (per {_unit(bucket)}, UTC)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    for series, label in (
        (list_cost, "batch work at real-time prices"),
        (
            batch_cost,
            f"batch work at the batch price ({float(prices.batch_discount * 100):g}% off)",
        ),
        (hardware, "engine time on batch work at hardware_per_hour"),
    ):
        if series:
            running, points = Decimal(0), []
            for b in buckets:
                running += series.get(b, Decimal(0))
                points.append(float(running))
            bottom.plot(times, points, label=label)
    bottom.set_ylabel("cumulative cost, $")
    bottom.grid(alpha=0.3)
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(loc="upper left")
    else:
        bottom.text(
            0.5, 0.5, "no prices configured ([pricing])", ha="center", transform=bottom.transAxes
        )
    locator = bottom.xaxis.get_major_locator()
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return len(buckets)


def _unit(bucket: int) -> str:
    return {60: "minute", 3600: "hour"}.get(bucket, "day")
