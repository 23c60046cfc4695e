"""Batch priorities and the flex tier in the scheduling policy, on plain data.

Priority first (higher first), then earliest deadline, then oldest; the share between
projects stays equal whatever the priorities; flex requests take batch claims' room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import cast

import pytest

from freight.config import MAX_BATCH_PRIORITY, MIN_BATCH_PRIORITY
from freight.engines import metering
from freight.engines.base import (
    BATCH_PRIORITY,
    FLEX_PRIORITY,
    REALTIME_PRIORITY,
    Choice,
    Generation,
    GenerationRequest,
    Sampling,
)
from freight.engines.pool import EnginePool
from freight.store.batch_requests import ClaimedRequest, Outcome
from freight.usage import forecast
from freight.worker import runner, scheduler
from freight.worker.scheduler import RunnableBatch
from tests.unit.test_forecast import open_batch


def batch(
    batch_id: str, *, project: str = "p", priority: int = 0, expires_at: int = 1000, n: int = 10
) -> RunnableBatch:
    return RunnableBatch(batch_id, project, 1, expires_at, n, priority)


def test_a_higher_priority_batch_is_claimed_first_whatever_its_deadline_or_age() -> None:
    runnable = [
        batch("low-soon", priority=0, expires_at=10),
        batch("high-late", priority=5, expires_at=10_000),
        batch("lowest", priority=-3, expires_at=1),
    ]
    assert scheduler.claim_order(runnable) == ["high-late", "low-soon", "lowest"]


def test_within_a_priority_the_earliest_deadline_is_claimed_first() -> None:
    runnable = [
        batch("p1-late", priority=1, expires_at=900),
        batch("p0-soon", expires_at=100),
        batch("p1-soon", priority=1, expires_at=200),
        batch("p0-late", expires_at=800),
    ]
    assert scheduler.claim_order(runnable) == ["p1-soon", "p1-late", "p0-soon", "p0-late"]


def test_a_projects_share_is_spent_on_its_highest_priority_batch_first() -> None:
    runnable = [
        batch("a-low", project="a", n=100),
        batch("a-high", project="a", priority=9, expires_at=5000, n=100),
        batch("b-only", project="b", n=100),
    ]
    assert scheduler.fair_claims(runnable, 40) == [("a-high", 20), ("b-only", 20)]


def test_priority_never_takes_another_projects_share() -> None:
    """Project a's priority-9 batch gets half of each refill, as a priority-0 one would;
    b, at the lowest priority, keeps its half."""
    runnable = [
        batch("a-high", project="a", priority=9, n=1000),
        batch("b-lowest", project="b", priority=-1000, n=1000),
    ]
    assert dict(scheduler.fair_claims(runnable, 64)) == {"a-high": 32, "b-lowest": 32}


def test_what_a_project_cannot_use_goes_to_the_others_by_priority_then_deadline() -> None:
    """The worker claims the rest of a refill in claim_order, across projects."""
    runnable = [
        batch("a-tiny", project="a", n=2),
        batch("b-late", project="b", expires_at=900, n=100),
        batch("c-high", project="c", priority=2, expires_at=950, n=100),
    ]
    plan = dict(scheduler.fair_claims(runnable, 30))
    assert plan == {"a-tiny": 2, "b-late": 14, "c-high": 14}
    assert scheduler.claim_order(runnable)[0] == "c-high"


@pytest.mark.parametrize(
    ("window", "num_flex", "room"), [(512, 0, 512), (512, 16, 496), (8, 12, 0)]
)
def test_flex_requests_running_take_room_from_batch_claims(
    window: int, num_flex: int, room: int
) -> None:
    assert scheduler.batch_claim_room(window, num_flex) == room


def test_flex_retry_after_grows_with_the_queue_and_stays_within_the_longest_wait() -> None:
    assert scheduler.flex_retry_after(0, 4, None, 600) == 1
    assert scheduler.flex_retry_after(8, 4, 2.0, 600) == 6  # 3 rounds of 2 s
    assert scheduler.flex_retry_after(10_000, 1, 5.0, 600) == 600
    assert scheduler.flex_retry_after(3, 1, 0.01, 600) == 1


def test_engine_priorities_put_flex_between_real_time_and_batch_work() -> None:
    assert REALTIME_PRIORITY < FLEX_PRIORITY < BATCH_PRIORITY

    def kind(priority: int) -> str:
        request = GenerationRequest("r", "m", Sampling(max_tokens=1), text="x", priority=priority)
        return metering.kind_of(request)

    # flex work is metered (and priced) as batch work; only real time is real time
    assert (kind(REALTIME_PRIORITY), kind(FLEX_PRIORITY), kind(BATCH_PRIORITY)) == (
        metering.REALTIME,
        metering.BATCH,
        metering.BATCH,
    )


def test_batch_priorities_keep_their_order_inside_the_engine_after_flex() -> None:
    order = [scheduler.engine_priority(p) for p in (MAX_BATCH_PRIORITY, 5, 0, -3)]
    order.append(scheduler.engine_priority(MIN_BATCH_PRIORITY))
    assert order == sorted(order) and len(set(order)) == len(order)
    assert FLEX_PRIORITY < scheduler.engine_priority(MAX_BATCH_PRIORITY) == BATCH_PRIORITY


def test_a_claimed_request_carries_its_batch_priority_into_the_engine() -> None:
    seen: list[int] = []

    class Engine:
        async def generate(self, request: GenerationRequest) -> Generation:
            seen.append(request.priority)
            return Generation(1, 0, [Choice("hi", 1, "stop")])

    class Pool:
        async def get(self, model: str) -> Engine:
            return Engine()

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for priority in (7, 0):
        claimed = ClaimedRequest(
            "r", "b", 1, "c", "/v1/chat/completions", body, 1, priority=priority
        )
        pool = cast(EnginePool, Pool())
        outcome = asyncio.run(runner.execute(claimed, pool, runner.SharedResults()))
        assert isinstance(outcome, Outcome) and outcome.status_code == 200
    assert seen == [scheduler.engine_priority(7), scheduler.engine_priority(0)]
    assert seen[0] < seen[1]  # the higher batch priority runs first in vLLM's queue


def test_the_forecast_counts_higher_priority_batches_as_ahead() -> None:
    high_late = dataclasses.replace(open_batch("h", expires_at=10_000, created_ns=9), priority=3)
    assert forecast.runs_before(high_late, 100, 1, priority=0)
    assert not forecast.runs_before(high_late, 100, 1, priority=4)
    assert forecast.runs_before(open_batch("a", expires_at=100), 200, 1, priority=0)
