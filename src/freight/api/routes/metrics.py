"""GET /metrics: Prometheus metrics, in the text exposition format.

From this process's engine meter (engines/metering.py) and worker: tokens, engine
requests, busy/up seconds, utilisation, latency and time-to-first-token histograms,
in-flight requests, retries. From the store (every process's batches): the batch queue
depth and batches by status. A deployment with separate `freight worker` processes sees
their engine metrics in the store (`engine_usage`, `freight report`), not here.

Time to first token is observed for streamed requests (real-time streams); batch work
asks the engine for final outputs only, so its first token is never seen.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from freight.api.deps import service
from freight.engines.flow import OVERLOAD_REASONS
from freight.engines.metering import KINDS, REALTIME, EngineMeter, Histogram
from freight.service import completion
from freight.service.runtime import Service
from freight.store import batches, usage
from freight.store.batches import ACTIVE, TERMINAL
from freight.store.statuses import BatchStatus, RequestStatus

router = APIRouter(tags=["metrics"])
BATCH_STATUSES = sorted(ACTIVE | TERMINAL)


class _Families:
    """A collector that yields metric families built beforehand (the store read is async)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _store_gauges(svc: Service) -> tuple[int, dict[BatchStatus, int], int]:
    with svc.db.read() as conn:
        running = batches.with_status(conn, BatchStatus.IN_PROGRESS)
        num_at_risk = sum(b.is_at_risk for b in completion.with_live_completions(conn, running))
        return (
            usage.num_requests_with_status(conn, RequestStatus.QUEUED),
            usage.batches_by_status(conn),
            num_at_risk,
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(svc: Service = Depends(service)) -> Response:
    num_queued, by_status, num_at_risk = await asyncio.to_thread(_store_gauges, svc)
    at_risk = GaugeMetricFamily(
        "freight_batches_at_risk",
        "Running batches expected, at the measured rate, to end after their deadline "
        "(the batch object's `at_risk`).",
    )
    at_risk.add_metric([], num_at_risk)
    families = [
        at_risk,
        *_flex_families(svc),
        *_queue_families(svc, num_queued, by_status),
        *_meter_families(svc.engines.meter, svc.settings.metrics.utilization_window_seconds),
        *_upstream_families(svc),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _queue_families(
    svc: Service, num_queued: int, by_status: dict[BatchStatus, int]
) -> Iterable[Metric]:
    meter = svc.engines.meter
    depth = GaugeMetricFamily(
        "freight_queue_depth",
        "Requests waiting to run: batch requests queued in the store (all workers); "
        "real-time requests in this process's engines with no output yet.",
        labels=["priority"],
    )
    depth.add_metric(["batch"], num_queued)
    depth.add_metric([REALTIME], meter.num_waiting[REALTIME])
    yield depth
    statuses = GaugeMetricFamily("freight_batches", "Batches by status.", labels=["status"])
    for status in BATCH_STATUSES:
        statuses.add_metric([status], by_status.get(status, 0))
    yield statuses
    worker = svc.worker
    retries = CounterMetricFamily(
        "freight_retries", "Engine failures retried by this process's worker."
    )
    retries.add_metric([], worker.num_retries if worker else 0)
    yield retries
    restarts = CounterMetricFamily(
        "freight_engine_restarts",
        "Engines of this process started anew after dying (killed, out of memory).",
        labels=["model"],
    )
    for model, num in sorted(svc.engines.num_restarts.items()):
        restarts.add_metric([model], num)
    yield restarts
    recorded = CounterMetricFamily(
        "freight_results_recorded", "Request results written by this process's worker."
    )
    recorded.add_metric([], worker.num_recorded if worker else 0)
    yield recorded
    from_cache = CounterMetricFamily(
        "freight_results_served_from_cache",
        "Batch requests this process's worker answered from the result cache, without the "
        "engine: no engine tokens, no cost (they are not in freight_results_recorded).",
    )
    from_cache.add_metric([], worker.num_served_from_cache if worker else 0)
    yield from_cache
    claimed = GaugeMetricFamily(
        "freight_worker_requests_in_flight", "Batch requests this process's worker is running."
    )
    claimed.add_metric([], worker.num_in_flight if worker else 0)
    yield claimed


def _flex_families(svc: Service) -> Iterable[Metric]:
    queue = svc.flex
    requests = GaugeMetricFamily(
        "freight_flex_requests",
        "service_tier flex requests of this process: in the engine, or waiting for a slot.",
        labels=["state"],
    )
    requests.add_metric(["in_engine"], queue.num_running)
    requests.add_metric(["waiting"], queue.num_waiting)
    yield requests
    refused = CounterMetricFamily(
        "freight_flex_refused", "Flex requests answered 429 (queue full or waited too long)."
    )
    refused.add_metric([], queue.num_refused)
    yield refused


def _meter_families(meter: EngineMeter, window_seconds: float) -> Iterable[Metric]:
    labels = ["model", "kind"]
    in_flight = GaugeMetricFamily(
        "freight_requests_in_flight", "Requests inside an engine now.", labels=labels
    )
    counters = {
        "num_requests": CounterMetricFamily(
            "freight_engine_requests", "Requests the engines finished.", labels=labels
        ),
        "input_tokens": CounterMetricFamily(
            "freight_prompt_tokens", "Prompt tokens the engines read.", labels=labels
        ),
        "cached_tokens": CounterMetricFamily(
            "freight_cached_prompt_tokens",
            "Prompt tokens served from the prefix cache.",
            labels=labels,
        ),
        "output_tokens": CounterMetricFamily(
            "freight_generation_tokens", "Tokens the engines generated.", labels=labels
        ),
    }
    busy = CounterMetricFamily(
        "freight_engine_busy_seconds",
        "Engine time with requests inside, shared between kinds by their requests.",
        labels=labels,
    )
    up = CounterMetricFamily("freight_engine_up_seconds", "Engine time up.", labels=["model"])
    utilization = GaugeMetricFamily(
        "freight_engine_utilization_ratio",
        f"Busy / up engine time over the last {window_seconds:g} s.",
        labels=["model"],
    )
    for model in meter.models():
        _, up_seconds = meter.busy_and_up_seconds(model)
        up.add_metric([model], up_seconds)
        ratio = meter.utilization(model, window_seconds)
        if ratio is not None:
            utilization.add_metric([model], ratio)
        for kind in KINDS:
            in_flight.add_metric([model, kind], meter.in_flight(model, kind))
            totals = meter.totals[(model, kind)]
            busy.add_metric([model, kind], totals.seconds)
            for name, family in counters.items():
                family.add_metric([model, kind], getattr(totals, name))
    yield in_flight
    yield from counters.values()
    yield busy
    yield up
    yield utilization
    yield _histogram(
        "freight_request_duration_seconds",
        "Time a request spent in the engine, start to final output.",
        meter.latency,
    )
    yield _histogram(
        "freight_time_to_first_token_seconds",
        "Time from a streamed request's start to its first output.",
        meter.time_to_first_token,
    )


def _histogram(
    name: str, documentation: str, histograms: dict[tuple[str, str], Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["model", "kind"])
    for (model, kind), histogram in sorted(histograms.items()):
        buckets = [
            ("+Inf" if math.isinf(bound) else repr(bound), count)
            for bound, count in histogram.cumulative()
        ]
        family.add_metric([model, kind], buckets, histogram.total)
    return family


def _upstream_families(svc: Service) -> Iterable[Metric]:
    """HTTP engines' flow control (engines/flow.py): limit, in flight, waiting, backoffs."""
    gauges = {
        "limit": GaugeMetricFamily(
            "freight_upstream_concurrency_limit",
            "Calls an HTTP engine may have in flight upstream now (adaptive).",
            labels=["model"],
        ),
        "in_flight": GaugeMetricFamily(
            "freight_upstream_in_flight", "Calls in flight upstream now.", labels=["model"]
        ),
        "num_waiting": GaugeMetricFamily(
            "freight_upstream_waiting", "Calls waiting for an upstream slot.", labels=["model"]
        ),
        "blocked_seconds": GaugeMetricFamily(
            "freight_upstream_retry_after_seconds",
            "Seconds left of the upstream's last Retry-After pause.",
            labels=["model"],
        ),
    }
    backoffs = CounterMetricFamily(
        "freight_upstream_backoffs",
        "Times the concurrency limit backed off, by cause.",
        labels=["model", "reason"],
    )
    calls = CounterMetricFamily(
        "freight_upstream_calls", "Upstream calls ended, by outcome.", labels=["model", "outcome"]
    )
    for model in svc.engines.started():
        engine = svc.engines.engine(model)
        stats_of = getattr(engine, "flow_stats", None)
        if stats_of is None:
            continue
        stats = stats_of()
        for name, family in gauges.items():
            family.add_metric([model], getattr(stats, name))
        for reason in OVERLOAD_REASONS:
            backoffs.add_metric([model, reason], stats.backoffs.get(reason, 0))
        for outcome, num in sorted(getattr(engine, "outcomes", {}).items()):
            calls.add_metric([model, outcome], num)
    yield from gauges.values()
    yield backoffs
    yield calls
