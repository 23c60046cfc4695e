"""Scheduling policy on plain data: batch order, claim sizes, admission and dedup keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from freight.engines.base import Choice, Generation
from freight.worker import scheduler
from freight.worker.runner import SharedResults
from freight.worker.scheduler import OrderPolicy, RunnableBatch

ALL_ON = OrderPolicy()
ALL_OFF = OrderPolicy(prefix_grouping=False, length_aware=False, deduplicate=False)


def body(system: str, user: str, max_tokens: int | None = 16, temperature: float = 0) -> dict:
    result: dict[str, Any] = {
        "model": "m",
        "temperature": temperature,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if max_tokens is not None:
        result["max_tokens"] = max_tokens
    return result


def test_batches_are_claimed_earliest_deadline_first_and_empty_ones_skipped() -> None:
    batches = [
        RunnableBatch("late", "p", 1, 500, 3),
        RunnableBatch("soon", "p", 2, 100, 1),
        RunnableBatch("done", "p", 0, 50, 0),
        RunnableBatch("tie-old", "p", 0, 500, 2),
    ]
    assert scheduler.claim_order(batches) == ["soon", "tie-old", "late"]


@pytest.mark.parametrize(("in_flight", "expected"), [(0, 512), (500, 0), (448, 64), (10, 502)])
def test_claims_refill_in_chunks(in_flight: int, expected: int) -> None:
    assert scheduler.claim_size(512, in_flight) == expected


def test_requests_sharing_a_prefix_get_adjacent_admission_keys() -> None:
    keys = {
        "a1": scheduler.admission_key(body("classify reviews " * 50, "good"), ALL_ON),
        "b1": scheduler.admission_key(body("translate to French", "hello"), ALL_ON),
        "a2": scheduler.admission_key(body("classify reviews " * 50, "bad"), ALL_ON),
        "b2": scheduler.admission_key(body("translate to French", "bye"), ALL_ON),
    }
    order = sorted(keys, key=keys.__getitem__)
    assert order.index("a1") + 1 == order.index("a2") or order.index("a2") + 1 == order.index("a1")
    assert abs(order.index("b1") - order.index("b2")) == 1


def test_length_aware_admits_long_outputs_first() -> None:
    short = scheduler.admission_key(body("s", "x", max_tokens=16), ALL_ON)
    long = scheduler.admission_key(body("s", "x", max_tokens=512), ALL_ON)
    unlimited = scheduler.admission_key(body("s", "x", max_tokens=None), ALL_ON)
    assert sorted([short, long, unlimited]) == [unlimited, long, short]


def test_everything_off_means_file_order() -> None:
    assert scheduler.admission_key(body("s", "x"), ALL_OFF) == ""
    assert scheduler.dedup_key("/v1/chat/completions", body("s", "x"), ALL_OFF) is None


def test_identical_greedy_requests_share_a_dedup_key_and_nothing_else_does() -> None:
    url = "/v1/chat/completions"
    same = [scheduler.dedup_key(url, body("s", "x"), ALL_ON) for _ in range(2)]
    assert same[0] is not None and same[0] == same[1]
    assert scheduler.dedup_key(url, body("s", "y"), ALL_ON) != same[0]
    assert scheduler.dedup_key("/v1/completions", body("s", "x"), ALL_ON) != same[0]
    assert scheduler.dedup_key(url, body("s", "x", temperature=0.7), ALL_ON) is None
    reordered = {k: v for k, v in reversed(body("s", "x").items())}
    assert scheduler.dedup_key(url, reordered, ALL_ON) == same[0]


def generation(text: str) -> list[Generation]:
    return [Generation(3, 0, [Choice(text, 1, "stop")])]


def test_shared_results_compute_each_key_once() -> None:
    calls = []

    async def main() -> list[list[Generation]]:
        shared = SharedResults()

        async def compute() -> list[Generation]:
            calls.append(1)
            await asyncio.sleep(0.01)
            return generation("hi")

        first = await asyncio.gather(*(shared.run("k", compute) for _ in range(5)))
        later = await shared.run("k", compute)
        other = await shared.run("other", compute)
        assert shared.num_reused == 5
        return [*first, later, other]

    results = asyncio.run(main())
    assert len(calls) == 2
    assert all(r[0].choices[0].text == "hi" for r in results)


def test_shared_computation_is_cancelled_when_every_waiter_is() -> None:
    async def main() -> bool:
        shared = SharedResults()
        started = asyncio.Event()
        was_cancelled = False

        async def compute() -> list[Generation]:
            nonlocal was_cancelled
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                was_cancelled = True
                raise
            return generation("never")

        waiters = [asyncio.create_task(shared.run("k", compute)) for _ in range(2)]
        await started.wait()
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await asyncio.sleep(0)
        return was_cancelled

    assert asyncio.run(main()) is True


def test_a_failed_shared_computation_is_recomputed_on_retry() -> None:
    attempts = []

    async def main() -> list[Generation]:
        shared = SharedResults()

        async def compute() -> list[Generation]:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("engine died")
            return generation("ok")

        with pytest.raises(RuntimeError):
            await shared.run("k", compute)
        return await shared.run("k", compute)

    assert asyncio.run(main())[0].choices[0].text == "ok"
    assert len(attempts) == 2
