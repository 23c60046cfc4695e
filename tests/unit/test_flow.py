"""Upstream flow control (engines/flow.py): AIMD limit, Retry-After, rate buckets, the gate."""

from __future__ import annotations

import asyncio

from freight.engines.flow import AdaptiveLimit, Gate, Ticket, TokenBucket
from tests.waiting import ManualClock


def keep_full(limit: AdaptiveLimit, in_flight: list[Ticket], num_successes: int) -> None:
    """Let the newest call succeed, then refill the limit at once, as the gate does."""
    for _ in range(num_successes):
        limit.succeeded(in_flight.pop(), 0.01)
        while limit.in_flight < limit.current:
            in_flight.append(limit.start())


def test_slow_start_adds_one_per_success_then_one_per_round() -> None:
    limit = AdaptiveLimit(4.0, maximum=100)
    in_flight = [limit.start() for _ in range(4)]
    assert [t.was_saturated for t in in_flight] == [False, False, False, True]
    keep_full(limit, in_flight, 4)
    assert limit.current == 8  # slow start: +1 per success that found the limit full
    limit = AdaptiveLimit(4.0, maximum=100, threshold=4.0)  # past the threshold
    in_flight = [limit.start() for _ in range(4)]
    keep_full(limit, in_flight, 4)
    assert 4.5 < limit.limit < 5.0  # +1/limit per success: about one per round of 4


def test_growth_stops_at_the_maximum() -> None:
    limit = AdaptiveLimit(4.0, maximum=6)
    in_flight = [limit.start() for _ in range(4)]
    keep_full(limit, in_flight, 10)
    assert limit.current == 6


def test_limit_holds_when_not_saturated_or_when_latency_grows() -> None:
    limit = AdaptiveLimit(4.0)
    ticket = limit.start()  # 1 of 4 in flight: the limit is not what holds calls back
    limit.succeeded(ticket, 0.01)
    assert limit.limit == 4.0
    tickets = [limit.start() for _ in range(4)]
    limit.succeeded(tickets.pop(), 0.01)  # sets the best latency; saturated -> grows
    assert limit.limit == 5.0
    grown = limit.limit
    slow = [limit.start() for _ in range(limit.current - limit.in_flight)]
    for ticket in slow:
        limit.succeeded(ticket, 0.05)  # 5x the best: above the tolerance of 2
    assert limit.limit == grown


def test_a_burst_of_failures_backs_off_once_and_never_below_the_minimum() -> None:
    limit = AdaptiveLimit(16.0, minimum=2)
    tickets = [limit.start() for _ in range(16)]
    backed_off = [limit.overloaded(t, "server_error", None) for t in tickets]
    assert backed_off.count(True) == 1
    assert limit.current == 8 and limit.num_backoffs["server_error"] == 1
    for _ in range(5):
        limit.overloaded(limit.start(), "timeout", None)
    assert limit.current == 2  # the floor
    assert limit.num_backoffs["timeout"] == 2  # 8 -> 4 -> 2; at the floor it cannot back off
    assert limit.in_flight == 0


def test_retry_after_stops_new_calls_until_it_passes() -> None:
    clock = ManualClock(1000.0)
    limit = AdaptiveLimit(4.0, clock=clock)
    limit.overloaded(limit.start(), "throttled", 3.0)
    assert not limit.can_start()
    assert limit.blocked_for() == 3.0
    clock.advance(2.9)
    assert not limit.can_start()
    clock.advance(0.2)
    assert limit.can_start()


def test_token_bucket_refills_per_minute_and_settles_estimates() -> None:
    clock = ManualClock(1000.0)
    bucket = TokenBucket(600, clock)  # 10 a second
    assert bucket.wait_for(600) == 0.0
    bucket.take(600)
    assert bucket.wait_for(10) == 1.0
    clock.advance(0.5)
    assert bucket.wait_for(10) == 0.5
    bucket.give_back(5)  # the call used 5 fewer tokens than estimated
    assert bucket.wait_for(10) == 0.0
    bucket.take(10)
    bucket.give_back(-60)  # ... or 60 more: charged afterwards
    assert bucket.wait_for(1) == 6.1
    assert TokenBucket(100, clock).wait_for(10_000) == 0.0  # capped at a full bucket


def test_gate_admits_under_the_limit_in_priority_order() -> None:
    async def scenario() -> list[str]:
        gate = Gate("up", AdaptiveLimit(1.0, maximum=1))
        first = await gate.acquire(0, 0)
        order: list[str] = []

        async def wait(name: str, priority: int) -> None:
            ticket = await gate.acquire(priority, 0)
            order.append(name)
            gate.succeeded(ticket, 0.01, 0)

        batch = asyncio.create_task(wait("batch", 0))
        await asyncio.sleep(0)
        realtime = asyncio.create_task(wait("realtime", -1))
        cancelled = asyncio.create_task(wait("cancelled", -2))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        assert gate.stats().num_waiting == 2 and gate.stats().in_flight == 1
        gate.ended(first)
        await asyncio.gather(batch, realtime)
        assert gate.stats().in_flight == 0
        return order

    assert asyncio.run(scenario()) == ["realtime", "batch"]


def test_gate_holds_calls_past_the_requests_per_minute_bucket() -> None:
    async def scenario() -> None:
        clock = ManualClock(1000.0)
        gate = Gate("up", AdaptiveLimit(8.0, clock=clock), requests_per_minute=6)  # 1 per 10 s
        for _ in range(6):  # the full bucket admits at once
            gate.ended(await gate.acquire(0, 0))
        late = asyncio.create_task(gate.acquire(0, 0))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not late.done() and gate.stats().num_waiting == 1  # waits for a refill
        late.cancel()
        clock.advance(10.0)  # one request's worth refilled
        gate.ended(await asyncio.wait_for(gate.acquire(0, 0), 5))
        assert gate.stats().num_waiting == 0 and gate.stats().in_flight == 0

    asyncio.run(scenario())


def test_the_best_latency_creeps_up_with_time_not_with_calls() -> None:
    clock = ManualClock(1000.0)
    limit = AdaptiveLimit(4.0, clock=clock)
    limit.succeeded(limit.start(), 0.01)
    for _ in range(1000):  # many slower calls at once do not move the reference
        limit.succeeded(limit.start(), 0.05)
    assert limit.best_seconds_per_token == 0.01
    clock.advance(70.0)  # about doubles in 70 s
    limit.succeeded(limit.start(), 0.05)
    assert 0.019 < (limit.best_seconds_per_token or 0) < 0.021
