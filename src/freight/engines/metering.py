"""Engine metering: busy time, tokens and latencies per model, for batch and real-time work.

Every engine the pool hands out is wrapped in a `MeteredEngine`, so batch work (the
worker), real-time routes and anything else that calls an engine is measured the same
way, told apart by the request's priority (REALTIME_PRIORITY is real time; flex-tier
requests count as batch work).

Time is partitioned, per model, into `batch`, `realtime` and `idle` seconds while the
engine is up. A stretch during which requests are in the engine is split between the
kinds in proportion to their requests in it, so batch + realtime seconds are exactly the
engine's busy time and utilisation is busy / (busy + idle). Seconds and tokens accrue in
periods of PERIOD_SECONDS of wall time; `take_unrecorded` hands over what accrued since
the last call so the worker can add it to the store (store/usage.py). Cumulative totals
and latency histograms stay in memory for /metrics.

Pure accounting, no I/O: the clock is injectable so tests drive time by hand. Everything
runs on one event loop, so no locking.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from freight.engines.base import (
    REALTIME_PRIORITY,
    Delta,
    EmbeddingEngine,
    EmbeddingRequest,
    Embeddings,
    Engine,
    Generation,
    GenerationRequest,
)

BATCH = "batch"
REALTIME = "realtime"
IDLE = "idle"
KINDS = (BATCH, REALTIME)
PERIOD_SECONDS = 60
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def kind_of(request: GenerationRequest | EmbeddingRequest) -> str:
    """Real-time requests carry REALTIME_PRIORITY; batch work and flex-tier requests
    (priced as batch work, worker/flex.py) anything above it."""
    return REALTIME if request.priority <= REALTIME_PRIORITY else BATCH


@dataclass
class Histogram:
    """Cumulative-bucket counts in Prometheus's sense, without the dependency."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # one per bound, then +Inf
    total: float = 0.0
    num: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), -1)
        self.counts[index] += 1
        self.total += value
        self.num += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound), +Inf last."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Usage:
    """Seconds, finished requests and tokens of one (model, kind), in a period or in all."""

    seconds: float = 0.0
    num_requests: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.seconds += other.seconds
        self.num_requests += other.num_requests
        self.input_tokens += other.input_tokens
        self.cached_tokens += other.cached_tokens
        self.output_tokens += other.output_tokens


@dataclass(frozen=True)
class UsageDelta:
    """What accrued for (model, kind) in the period starting at `period_start`."""

    model: str
    kind: str  # batch, realtime or idle
    period_start: int  # unix seconds, a multiple of PERIOD_SECONDS
    usage: Usage


@dataclass
class Running:
    """A request inside an engine (the handle `started` returns)."""

    model: str
    kind: str
    started_at: float
    is_waiting: bool = True  # no output yet


@dataclass
class _EngineClock:
    num_up: int = 0  # engines of this model that are up (a replacement overlaps the old)
    since: float | None = None  # time accounted up to, while up
    in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    samples: deque[tuple[float, float, float]] = field(default_factory=deque)  # t, busy, up


class EngineMeter:
    """Accumulates what the engines did; read by /metrics and recorded in the store."""

    def __init__(
        self, clock: Callable[[], float] = time.time, period_seconds: int = PERIOD_SECONDS
    ) -> None:
        self.clock = clock
        self.period_seconds = period_seconds
        self._clocks: dict[str, _EngineClock] = defaultdict(_EngineClock)
        self._unrecorded: dict[tuple[str, str, int], Usage] = defaultdict(Usage)
        self.totals: dict[tuple[str, str], Usage] = defaultdict(Usage)  # (model, kind|idle)
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.time_to_first_token: dict[tuple[str, str], Histogram] = {}
        self.num_waiting: dict[str, int] = dict.fromkeys(KINDS, 0)

    # --- engine lifecycle --------------------------------------------------------------

    def engine_up(self, model: str) -> None:
        clock = self._clocks[model]
        self._advance(model, self.clock())
        clock.num_up += 1
        if clock.since is None:
            clock.since = self.clock()

    def engine_down(self, model: str) -> None:
        clock = self._clocks[model]
        self._advance(model, self.clock())
        clock.num_up = max(0, clock.num_up - 1)
        if clock.num_up == 0:
            clock.since = None

    # --- requests ----------------------------------------------------------------------

    def started(self, model: str, kind: str) -> Running:
        now = self.clock()
        self._advance(model, now)
        self._clocks[model].in_flight[kind] += 1
        self.num_waiting[kind] += 1
        return Running(model, kind, now)

    def first_output(self, running: Running) -> None:
        if not running.is_waiting:
            return
        running.is_waiting = False
        self.num_waiting[running.kind] -= 1
        key = (running.model, running.kind)
        histogram = self.time_to_first_token.setdefault(key, Histogram(TTFT_BUCKETS))
        histogram.observe(max(0.0, self.clock() - running.started_at))

    def finished(self, running: Running, generation: Generation | None) -> None:
        """The request left the engine; `generation` is None if it failed or was aborted."""
        now = self.clock()
        self._advance(running.model, now)
        self._clocks[running.model].in_flight[running.kind] -= 1
        if running.is_waiting:
            running.is_waiting = False
            self.num_waiting[running.kind] -= 1
        if generation is None:
            return
        key = (running.model, running.kind)
        self.latency.setdefault(key, Histogram(LATENCY_BUCKETS)).observe(
            max(0.0, now - running.started_at)
        )
        tokens = Usage(
            num_requests=1,
            input_tokens=generation.num_prompt_tokens,
            cached_tokens=generation.num_cached_tokens,
            output_tokens=generation.num_output_tokens,
        )
        self._unrecorded[(running.model, running.kind, self._period(now))].add(tokens)
        self.totals[key].add(tokens)

    # --- reading -----------------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(self._clocks)

    def in_flight(self, model: str, kind: str) -> int:
        clock = self._clocks.get(model)
        return 0 if clock is None else clock.in_flight[kind]

    def take_unrecorded(self) -> list[UsageDelta]:
        """What accrued since the last call (time up to now included), and forget it."""
        now = self.clock()
        for model in list(self._clocks):
            self._advance(model, now)
        taken, self._unrecorded = self._unrecorded, defaultdict(Usage)
        return [UsageDelta(m, k, p, usage) for (m, k, p), usage in sorted(taken.items())]

    def busy_and_up_seconds(self, model: str) -> tuple[float, float]:
        self._advance(model, self.clock())
        busy = sum(self.totals[(model, kind)].seconds for kind in KINDS)
        return busy, busy + self.totals[(model, IDLE)].seconds

    def sample(self) -> None:
        """Remember every model's busy and up time now (the utilisation window's base).

        Called by the usage recorder every few seconds and by each utilisation read.
        """
        for model in list(self._clocks):
            self._sample(model, self.clock())

    def _sample(self, model: str, now: float) -> tuple[float, float]:
        busy, up = self.busy_and_up_seconds(model)
        samples = self._clocks[model].samples
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, busy, up))
        return busy, up

    def utilization(self, model: str, window_seconds: float) -> float | None:
        """Busy / up over about the last `window_seconds` (since start, until then)."""
        now = self.clock()
        busy, up = self._sample(model, now)
        samples = self._clocks[model].samples
        while len(samples) > 1 and now - samples[1][0] >= window_seconds:
            samples.popleft()  # keep the newest sample at least a window old as the base
        base_t, base_busy, base_up = samples[0]
        if now - base_t < window_seconds:
            base_busy = base_up = 0.0
        if up - base_up <= 0:
            return None
        return min(1.0, (busy - base_busy) / (up - base_up))

    # --- accounting --------------------------------------------------------------------

    def _period(self, t: float) -> int:
        return int(t // self.period_seconds) * self.period_seconds

    def _advance(self, model: str, now: float) -> None:
        """Account the time from the model's clock to `now`, split at period boundaries."""
        clock = self._clocks[model]
        if clock.since is None or now <= clock.since:
            return
        total = sum(clock.in_flight.values())
        t = clock.since
        while t < now:
            period = self._period(t)
            end = min(now, period + self.period_seconds)
            shares = (
                {kind: n / total for kind, n in clock.in_flight.items() if n}
                if total
                else {IDLE: 1.0}
            )
            for kind, share in shares.items():
                seconds = (end - t) * share
                self._unrecorded[(model, kind, period)].seconds += seconds
                self.totals[(model, kind)].seconds += seconds
            t = end
        clock.since = now


class MeteredEngine:
    """An engine whose every request is measured by an EngineMeter; otherwise the engine.

    Attributes it does not define (`max_num_seqs`, `is_running`, `prompt_token_ids`, ...)
    are the wrapped engine's, so callers see no difference. An engine with an `embed`
    method (embeddings) is metered the same way: its input tokens, no output tokens.
    """

    max_num_seqs: int  # declared for the Engine protocol; read from the engine
    max_model_len: int

    def __init__(self, engine: Engine | EmbeddingEngine, meter: EngineMeter) -> None:
        self.engine = engine
        self.meter = meter
        self.name = engine.name
        self._is_up = True
        meter.engine_up(engine.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.engine, attribute)

    async def start(self) -> None:
        await self.engine.start()

    async def generate(self, request: GenerationRequest) -> Generation:
        running = self.meter.started(self.name, kind_of(request))
        generation: Generation | None = None
        try:
            generation = await cast(Engine, self.engine).generate(request)
            return generation
        finally:
            self.meter.finished(running, generation)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta | Generation]:
        running = self.meter.started(self.name, kind_of(request))
        generation: Generation | None = None
        try:
            async for item in cast(Engine, self.engine).stream(request):
                if isinstance(item, Generation):
                    generation = item
                else:
                    self.meter.first_output(running)
                yield item
        finally:
            self.meter.finished(running, generation)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        running = self.meter.started(self.name, kind_of(request))
        done: Generation | None = None
        try:
            embeddings = await cast(EmbeddingEngine, self.engine).embed(request)
            done = Generation(embeddings.num_prompt_tokens, 0)
            return embeddings
        finally:
            self.meter.finished(running, done)

    async def abort(self, request_ids: list[str]) -> None:
        await self.engine.abort(request_ids)

    async def shutdown(self) -> None:
        try:
            await self.engine.shutdown()
        finally:
            if self._is_up:
                self._is_up = False
                self.meter.engine_down(self.name)
