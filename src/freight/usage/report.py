"""`freight report`: usage, cost and measured economics per day, project and model.

One row per (UTC day, project, model, kind). Batch rows come from the requests that
succeeded that day (store/usage.py); flex rows from the flex-tier requests each project's
keys sent (billed like batch work: `batch_cost` is their price); real-time rows from the
engine meter, which knows the model but not the project (shown as `*`). Columns:

- requests, input/output tokens: what was delivered; from_cache: of those requests, how
  many the result cache answered (they carry no tokens here, so they cost nothing);
- realtime_cost: the same tokens at the model's list prices; batch_cost: with the batch
  discount; savings: the difference (usage/pricing.py). Unpriced models show none;
- tokens_per_second: generated tokens per second of engine time spent on that kind of
  work that day; utilization: the engine's busy / up time that day; measured_usd_per_mtok:
  the machine's price (`[pricing] hardware_per_hour`) for that engine time over the
  tokens (input + output) delivered, i.e. what a million tokens actually cost here.

The last three are properties of the engine (model) on that day and kind of work, so
every project's row of that model and day shows the same values.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from rich.table import Table

from freight.config import Settings
from freight.engines.metering import BATCH, IDLE, KINDS, REALTIME
from freight.store import flex_usage, usage
from freight.store.db import Database
from freight.usage import pricing

ALL_PROJECTS = "*"
FLEX = "flex"  # single requests served in the flex tier (worker/flex.py), at the batch price


@dataclass(frozen=True)
class EngineDay:
    """What one model's engine did in one bucket, per kind (batch, realtime, idle)."""

    seconds: dict[str, float]
    num_requests: dict[str, int]
    input_tokens: dict[str, int]
    cached_tokens: dict[str, int]
    output_tokens: dict[str, int]

    @property
    def utilization(self) -> float | None:
        busy = sum(self.seconds.get(kind, 0.0) for kind in KINDS)
        return pricing.utilization(busy, busy + self.seconds.get(IDLE, 0.0))


@dataclass(frozen=True)
class ReportRow:
    day: str
    project: str
    model: str
    kind: str
    num_requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    realtime_cost: Decimal | None
    batch_cost: Decimal | None
    savings: Decimal | None
    tokens_per_second: float | None
    utilization: float | None
    measured_usd_per_mtok: Decimal | None
    num_from_cache: int = 0  # served by the result cache: zero cost


@dataclass(frozen=True)
class Report:
    since: int
    until: int
    batch_discount: Decimal
    hardware_per_hour: Decimal | None
    rows: list[ReportRow]

    def totals(self) -> dict[str, Any]:
        def money(name: str) -> Decimal | None:
            values = [getattr(r, name) for r in self.rows if getattr(r, name) is not None]
            return sum(values, pricing.usd(0)) if values else None

        return {
            "num_requests": sum(r.num_requests for r in self.rows),
            "num_from_cache": sum(r.num_from_cache for r in self.rows),
            "input_tokens": sum(r.input_tokens for r in self.rows),
            "cached_tokens": sum(r.cached_tokens for r in self.rows),
            "output_tokens": sum(r.output_tokens for r in self.rows),
            "realtime_cost": money("realtime_cost"),
            "batch_cost": money("batch_cost"),
            "savings": money("savings"),
        }


def day_name(unix: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(unix))


def engine_days(
    rows: list[usage.EngineUsageRow],
) -> dict[tuple[int, str], EngineDay]:
    """Metered rows grouped by (bucket, model)."""
    grouped: dict[tuple[int, str], EngineDay] = {}
    for row in rows:
        day = grouped.setdefault(
            (row.bucket_start, row.model),
            EngineDay(*(defaultdict(int) for _ in range(5))),  # type: ignore[arg-type]
        )
        day.seconds[row.kind] += row.seconds
        day.num_requests[row.kind] += row.num_requests
        day.input_tokens[row.kind] += row.input_tokens
        day.cached_tokens[row.kind] += row.cached_tokens
        day.output_tokens[row.kind] += row.output_tokens
    return grouped


def build(
    db: Database,
    settings: Settings,
    *,
    since: int,
    until: int | None = None,
    project: str | None = None,
) -> Report:
    """The report for [since, until) from the store, priced with `settings`."""
    prices = pricing.PriceBook(settings)
    with db.read() as conn:
        # every project: the engine columns spread engine time over everyone's tokens
        delivered = usage.delivered_by_bucket(
            conn, since=since, until=until, bucket_seconds=usage.DAY_SECONDS
        )
        metered = usage.engine_usage_by_bucket(
            conn, since=since, until=until, bucket_seconds=usage.DAY_SECONDS
        )
        flex = flex_usage.by_bucket(
            conn, since=since, until=until, bucket_seconds=usage.DAY_SECONDS
        )
    engines = engine_days(metered)
    # Tokens delivered by batch work and flex requests (metered as batch work) per (day,
    # model), all projects: the measured cost of the engine's batch time is spread over these.
    batch_tokens: dict[tuple[int, str], int] = defaultdict(int)
    batch_output: dict[tuple[int, str], int] = defaultdict(int)
    kinds = [(BATCH, d) for d in delivered] + [(FLEX, d) for d in flex]
    for _, d in kinds:
        batch_tokens[(d.bucket_start, d.model or "")] += d.input_tokens + d.output_tokens
        batch_output[(d.bucket_start, d.model or "")] += d.output_tokens
    rows = []
    for kind, d in kinds:
        if project is not None and d.project != project:
            continue
        key = (d.bucket_start, d.model or "")
        engine = engines.get(key)
        seconds = engine.seconds.get(BATCH, 0.0) if engine else 0.0
        cost = prices.cost(d.model, d.input_tokens, d.output_tokens)
        rows.append(
            ReportRow(
                day=day_name(d.bucket_start),
                project=d.project,
                model=d.model or "(unknown)",
                kind=kind,
                num_requests=d.num_requests,
                input_tokens=d.input_tokens,
                cached_tokens=d.cached_tokens,
                output_tokens=d.output_tokens,
                realtime_cost=cost.realtime if cost else None,
                batch_cost=cost.batch if cost else None,
                savings=cost.savings if cost else None,
                tokens_per_second=pricing.tokens_per_second(batch_output[key], seconds),
                utilization=engine.utilization if engine else None,
                measured_usd_per_mtok=pricing.per_million_tokens(
                    prices.hardware_per_hour, seconds, batch_tokens[key]
                ),
                num_from_cache=d.num_from_cache,
            )
        )
    if project is None:
        rows += _realtime_rows(engines, prices)
    rows.sort(key=lambda r: (r.day, r.project, r.model, r.kind))
    return Report(
        since=since,
        until=until or int(time.time()),
        batch_discount=prices.batch_discount,
        hardware_per_hour=prices.hardware_per_hour,
        rows=rows,
    )


def _realtime_rows(
    engines: dict[tuple[int, str], EngineDay], prices: pricing.PriceBook
) -> list[ReportRow]:
    rows = []
    for (bucket, model), engine in engines.items():
        if not engine.num_requests.get(REALTIME):
            continue
        seconds = engine.seconds.get(REALTIME, 0.0)
        output = engine.output_tokens[REALTIME]
        input_tokens = engine.input_tokens[REALTIME]
        list_price = prices.prices(model)
        realtime_cost = (
            pricing.usd(list_price.exact_cost(input_tokens, output)) if list_price else None
        )
        rows.append(
            ReportRow(
                day=day_name(bucket),
                project=ALL_PROJECTS,
                model=model,
                kind=REALTIME,
                num_requests=engine.num_requests[REALTIME],
                input_tokens=input_tokens,
                cached_tokens=engine.cached_tokens[REALTIME],
                output_tokens=output,
                realtime_cost=realtime_cost,
                batch_cost=None,
                savings=None,
                tokens_per_second=pricing.tokens_per_second(output, seconds),
                utilization=engine.utilization,
                measured_usd_per_mtok=pricing.per_million_tokens(
                    prices.hardware_per_hour, seconds, input_tokens + output
                ),
            )
        )
    return rows


# --- output ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "since": day_name(report.since),
            "until": day_name(report.until),
            "currency": "USD",
            "batch_discount": _plain(report.batch_discount),
            "hardware_per_hour": _plain(report.hardware_per_hour),
            "rows": [{k: _plain(v) for k, v in asdict(r).items()} for r in report.rows],
            "totals": {k: _plain(v) for k, v in report.totals().items()},
        },
        indent=2,
    )


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    names = list(ReportRow.__dataclass_fields__)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in report.rows:
        values = [_plain(getattr(row, name)) for name in names]
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def to_table(report: Report) -> Table:
    discount = f"{float(report.batch_discount * 100):g}%"
    hardware = (
        f"${report.hardware_per_hour}/h" if report.hardware_per_hour is not None else "not set"
    )
    table = Table(
        title=f"Freight usage {day_name(report.since)} .. {day_name(report.until)} (UTC)",
        caption=f"batch discount {discount}; hardware {hardware}; engine columns are per "
        "model, day and kind of work",
    )
    for name, justify in (
        ("day", "left"),
        ("project", "left"),
        ("model", "left"),
        ("kind", "left"),
        ("requests", "right"),
        ("from cache", "right"),
        ("input tok", "right"),
        ("output tok", "right"),
        ("real-time $", "right"),
        ("batch $", "right"),
        ("savings $", "right"),
        ("tok/s", "right"),
        ("util", "right"),
        ("$/1M tok", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report.rows:
        table.add_row(
            r.day,
            r.project,
            r.model,
            r.kind,
            f"{r.num_requests:,}",
            f"{r.num_from_cache:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            pricing.format_usd(r.realtime_cost),
            pricing.format_usd(r.batch_cost),
            pricing.format_usd(r.savings),
            _number(r.tokens_per_second, ",.1f"),
            "-" if r.utilization is None else f"{r.utilization:.0%}",
            pricing.format_usd(r.measured_usd_per_mtok),
        )
    totals = report.totals()
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        "",
        f"{totals['num_requests']:,}",
        f"{totals['num_from_cache']:,}",
        f"{totals['input_tokens']:,}",
        f"{totals['output_tokens']:,}",
        pricing.format_usd(totals["realtime_cost"]),
        pricing.format_usd(totals["batch_cost"]),
        pricing.format_usd(totals["savings"]),
        "",
        "",
        "",
    )
    return table
