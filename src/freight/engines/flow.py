"""Flow control for an upstream server: adaptive concurrency, rate limits, Retry-After.

The HTTP engine (engines/http_engine.py) asks a `Gate` for a slot before each upstream call
and tells it how the call went. The policy is plain accounting with an injectable
clock (`AdaptiveLimit`, `TokenBucket`), so tests drive it without sleeping; only the
`Gate` waits.

The concurrency limit follows AIMD, as TCP's congestion window does. It starts small
and grows by one per success while below the slow-start threshold (so it doubles per
round of requests), then by 1/limit per success (one per round). It grows only while
the upstream keeps up: the call's seconds per output token must stay within
`latency_tolerance` of the best seen (a server that queues work inside slows down before
it fails), and only when the limit was actually reached (a limit that is never used
proves nothing). A 429, 5xx, timeout or dropped connection multiplies the limit by
`backoff_factor` and sets the threshold there; calls that started before that backoff
cannot back off again, so one burst of failures halves the limit once, not once per
failure. A `Retry-After` stops all new calls until it has passed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# The best latency seen creeps up by this factor per second, so that one lucky call
# cannot pin it forever and a lasting change of workload is learnt within minutes.
BEST_DRIFT_PER_SECOND = 1.01
OVERLOAD_REASONS = ("throttled", "server_error", "timeout", "connection")


@dataclass(frozen=True)
class Ticket:
    """One admitted call: its order of admission, and whether it used the whole limit."""

    seq: int
    was_saturated: bool
    cost: int = 0  # tokens taken from the tokens-per-minute bucket


@dataclass
class AdaptiveLimit:
    """How many calls may be in flight now (AIMD; see the module docstring)."""

    limit: float
    minimum: int = 1
    maximum: int = 256
    latency_tolerance: float = 2.0
    backoff_factor: float = 0.5
    clock: Clock = time.monotonic
    in_flight: int = 0
    threshold: float = math.inf  # slow start below this
    blocked_until: float = 0.0  # Retry-After: no new call before this clock time
    best_seconds_per_token: float | None = None
    best_at: float = 0.0  # when best_seconds_per_token was last updated
    num_backoffs: Counter[str] = field(default_factory=Counter)
    _seq: int = 0
    _last_backoff_seq: int = 0

    @property
    def current(self) -> int:
        """The limit as a number of calls."""
        return max(self.minimum, int(self.limit))

    def blocked_for(self) -> float:
        """Seconds until Retry-After has passed (0: not blocked)."""
        return max(0.0, self.blocked_until - self.clock())

    def can_start(self) -> bool:
        return self.in_flight < self.current and self.blocked_for() == 0.0

    def start(self, cost: int = 0) -> Ticket:
        self._seq += 1
        self.in_flight += 1
        return Ticket(self._seq, self.in_flight >= self.current, cost)

    def succeeded(self, ticket: Ticket, seconds_per_token: float) -> None:
        """A call ended well in `seconds_per_token`: grow if the upstream kept up."""
        self.in_flight -= 1
        now = self.clock()
        best = self.best_seconds_per_token
        if best is None:
            best = seconds_per_token
        else:
            drifted = best * BEST_DRIFT_PER_SECOND ** max(0.0, now - self.best_at)
            best = min(seconds_per_token, drifted)
        self.best_seconds_per_token, self.best_at = best, now
        if not ticket.was_saturated or seconds_per_token > self.latency_tolerance * best:
            return  # the limit was not the bottleneck, or the upstream is slowing: hold
        before = self.current
        self.limit += 1.0 if self.limit < self.threshold else 1.0 / self.limit
        self.limit = min(float(self.maximum), self.limit)
        if self.current != before:
            log.debug("upstream concurrency limit %d -> %d", before, self.current)

    def overloaded(self, ticket: Ticket, reason: str, retry_after: float | None) -> bool:
        """The upstream refused or failed the call for load; True if the limit backed off."""
        self.in_flight -= 1
        if retry_after is not None and retry_after > 0:
            self.blocked_until = max(self.blocked_until, self.clock() + retry_after)
        if ticket.seq <= self._last_backoff_seq or self.limit <= self.minimum:
            return False  # started before the last backoff (accounted for), or at the floor
        self._last_backoff_seq = self._seq
        self.limit = max(float(self.minimum), self.limit * self.backoff_factor)
        self.threshold = self.limit
        self.num_backoffs[reason] += 1
        return True

    def ended(self, ticket: Ticket) -> None:
        """A call ended without telling anything about load (rejected, cancelled)."""
        self.in_flight -= 1


@dataclass
class TokenBucket:
    """A per-minute allowance (requests or tokens) that refills continuously."""

    per_minute: int
    clock: Clock = time.monotonic
    level: float | None = None  # None: full (the first look fills it)
    updated: float = 0.0

    def _refill(self) -> float:
        now = self.clock()
        if self.level is None:
            self.level = float(self.per_minute)
        else:
            refill = (now - self.updated) * self.per_minute / 60
            self.level = min(float(self.per_minute), self.level + refill)
        self.updated = now
        return self.level

    def wait_for(self, amount: int) -> float:
        """Seconds until `amount` (at most a full bucket) can be taken; 0: now."""
        missing = min(amount, self.per_minute) - self._refill()
        return max(0.0, missing * 60 / self.per_minute)

    def take(self, amount: int) -> None:
        self.level = self._refill() - min(amount, self.per_minute)

    def give_back(self, amount: float) -> None:
        """Return an overestimate (or, negative, charge an underestimate)."""
        self.level = min(float(self.per_minute), self._refill() + amount)


@dataclass(frozen=True)
class FlowStats:
    """What /metrics shows of one upstream."""

    limit: int
    in_flight: int
    num_waiting: int
    backoffs: dict[str, int]
    blocked_seconds: float


class Gate:
    """Admits calls to one upstream under its limit and buckets, lower priority first."""

    def __init__(
        self,
        name: str,
        limit: AdaptiveLimit,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self.name = name
        self.limit = limit
        self.requests = (
            TokenBucket(requests_per_minute, limit.clock) if requests_per_minute else None
        )
        self.tokens = TokenBucket(tokens_per_minute, limit.clock) if tokens_per_minute else None
        self._waiters: list[tuple[int, int, int, asyncio.Future[Ticket]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def stats(self) -> FlowStats:
        return FlowStats(
            self.limit.current,
            self.limit.in_flight,
            sum(1 for *_, f in self._waiters if not f.done()),
            dict(self.limit.num_backoffs),
            self.limit.blocked_for(),
        )

    async def acquire(self, priority: int, cost: int) -> Ticket:
        """Wait for a slot; `cost` is the call's estimated tokens (for tokens per minute)."""
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), cost, future))
        self._admit()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.ended(future.result())  # admitted just as the caller gave up
            raise

    def succeeded(self, ticket: Ticket, seconds_per_token: float, num_tokens: int) -> None:
        self.limit.succeeded(ticket, seconds_per_token)
        if self.tokens is not None:
            self.tokens.give_back(ticket.cost - num_tokens)
        self._admit()

    def overloaded(self, ticket: Ticket, reason: str, retry_after: float | None) -> None:
        before = self.limit.current
        if self.limit.overloaded(ticket, reason, retry_after):
            log.warning(
                "upstream %s %s: concurrency limit %d -> %d%s",
                self.name,
                reason.replace("_", " "),
                before,
                self.limit.current,
                f", paused {retry_after:g} s (Retry-After)" if retry_after else "",
            )
        self._admit()

    def ended(self, ticket: Ticket) -> None:
        self.limit.ended(ticket)
        self._admit()

    def _admit(self) -> None:
        """Start every waiter that may start now; else wake up when one may."""
        while self._waiters:
            _, _, cost, future = self._waiters[0]
            if future.done():  # its caller gave up
                heapq.heappop(self._waiters)
                continue
            if self.limit.in_flight >= self.limit.current:
                return  # a call ending calls _admit again
            wait = self.limit.blocked_for()
            if self.requests is not None:
                wait = max(wait, self.requests.wait_for(1))
            if self.tokens is not None:
                wait = max(wait, self.tokens.wait_for(cost))
            if wait > 0:
                self._wake_in(wait)
                return
            heapq.heappop(self._waiters)
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(cost)
            future.set_result(self.limit.start(cost))

    def _wake_in(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        if self._timer is not None and not self._timer.cancelled():
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._admit()
