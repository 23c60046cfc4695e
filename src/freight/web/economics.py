"""The cost page's numbers: a project's batch costs per day and the engines' economics.

Costs come from batch rows (usage.batch_days: each batch on the day it ended), so the
page reads one row per batch at most, however large the batches; `freight report`
attributes tokens to the day each request finished instead, so a batch that ran across
midnight is split there and whole here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from freight.engines.metering import BATCH
from freight.service.runtime import Service
from freight.store import usage
from freight.usage import pricing, report


@dataclass(frozen=True)
class CostRow:
    day: str
    model: str
    num_batches: int
    num_requests: int
    input_tokens: int
    output_tokens: int
    cost: pricing.Cost | None
    num_from_cache: int = 0  # of num_requests, served by the result cache: no cost


@dataclass(frozen=True)
class EngineRow:
    day: str
    model: str
    busy_seconds: float
    utilization: float | None
    tokens_per_second: float | None
    measured_usd_per_mtok: Decimal | None


def cost_page(svc: Service, project: str | None, *, since: int) -> dict[str, Any]:
    """The cost page of one project (None: of every project, for an admin)."""
    prices = pricing.PriceBook(svc.settings)
    with svc.db.read() as conn:
        own = usage.batch_days(conn, since=since, project=project)
        everyone = usage.batch_days(conn, since=since)
        metered = usage.engine_usage_by_bucket(conn, since=since, bucket_seconds=usage.DAY_SECONDS)
    rows = [
        CostRow(
            day=report.day_name(r.day_start),
            model=r.model or "(unknown)",
            num_batches=r.num_batches,
            num_requests=r.num_succeeded,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cost=prices.cost(r.model, r.input_tokens, r.output_tokens),
            num_from_cache=r.num_from_cache,
        )
        for r in own
    ]
    priced = [r.cost for r in rows if r.cost is not None]
    total = sum(priced[1:], priced[0]) if priced else None
    delivered: dict[tuple[int, str], int] = defaultdict(int)
    for r in everyone:
        delivered[(r.day_start, r.model or "")] += r.input_tokens + r.output_tokens
    engines = []
    for (day_start, model), engine in sorted(report.engine_days(metered).items(), reverse=True):
        seconds = engine.seconds.get(BATCH, 0.0)
        engines.append(
            EngineRow(
                day=report.day_name(day_start),
                model=model,
                busy_seconds=sum(v for k, v in engine.seconds.items() if k != "idle"),
                utilization=engine.utilization,
                tokens_per_second=pricing.tokens_per_second(
                    engine.output_tokens.get(BATCH, 0), seconds
                ),
                measured_usd_per_mtok=pricing.per_million_tokens(
                    prices.hardware_per_hour, seconds, delivered[(day_start, model)]
                ),
            )
        )
    return {
        "project": project,
        "scope": project,
        "rows": rows,
        "total": total,
        "num_requests": sum(r.num_requests for r in rows),
        "num_from_cache": sum(r.num_from_cache for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "engines": engines,
        "discount": prices.batch_discount,
        "hardware_per_hour": prices.hardware_per_hour,
    }
