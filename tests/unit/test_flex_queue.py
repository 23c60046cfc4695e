"""The flex tier's queue (worker/flex.py): bounded slots, a bounded line, 429s that say
when to come back, and slots handed on in arrival order. No engine: each test holds and
frees slots by hand on one event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from freight.config import SchedulerSettings, Settings
from freight.errors import FlexUnavailable
from freight.worker.flex import FlexQueue


def queue(tmp_path: Path, **scheduler: float) -> FlexQueue:
    settings = Settings(home=tmp_path, scheduler=SchedulerSettings(**scheduler))  # type: ignore[arg-type]
    return FlexQueue(settings)


async def hold(flex: FlexQueue, release: asyncio.Event, order: list[str], name: str) -> None:
    async with flex.slot():
        order.append(name)
        await release.wait()


def test_requests_beyond_the_running_slots_wait_and_start_in_arrival_order(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[str]:
        flex = queue(tmp_path, flex_max_running=1, flex_max_queued=5)
        order: list[str] = []
        gates = {name: asyncio.Event() for name in "abc"}
        tasks = [asyncio.create_task(hold(flex, gates[n], order, n)) for n in "abc"]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert (flex.num_running, flex.num_waiting, order) == (1, 2, ["a"])
        for name in "abc":
            gates[name].set()
            await asyncio.wait_for(tasks["abc".index(name)], 5)
        assert (flex.num_running, flex.num_waiting, flex.num_served) == (0, 0, 3)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_a_full_line_is_refused_at_once_with_a_retry_after(tmp_path: Path) -> None:
    async def scenario() -> FlexUnavailable:
        flex = queue(tmp_path, flex_max_running=1, flex_max_queued=1)
        release = asyncio.Event()
        order: list[str] = []
        running = asyncio.create_task(hold(flex, release, order, "a"))
        waiting = asyncio.create_task(hold(flex, release, order, "b"))
        await asyncio.sleep(0)
        with pytest.raises(FlexUnavailable) as refused:
            async with flex.slot():
                pass
        release.set()
        await asyncio.wait_for(asyncio.gather(running, waiting), 5)
        assert flex.num_refused == 1 and flex.num_running == 0
        return refused.value

    error = asyncio.run(scenario())
    assert error.status_code == 429 and error.retry_after >= 1
    assert "flex queue is full" in error.message and "flex_max_queued" in error.message


def test_one_that_cannot_start_within_the_longest_wait_is_refused_and_leaves_the_line(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        flex = queue(tmp_path, flex_max_running=1, flex_max_queued=4, flex_max_wait_seconds=0.05)
        release = asyncio.Event()
        running = asyncio.create_task(hold(flex, release, [], "a"))
        await asyncio.sleep(0)
        with pytest.raises(FlexUnavailable, match="flex_max_wait_seconds"):
            async with flex.slot():
                pass
        assert flex.num_waiting == 0
        release.set()
        await asyncio.wait_for(running, 5)
        async with flex.slot():  # the slot is free again
            assert flex.num_running == 1
        assert flex.num_running == 0

    asyncio.run(scenario())


def test_a_waiting_request_whose_client_leaves_gives_up_its_place(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        flex = queue(tmp_path, flex_max_running=1, flex_max_queued=4)
        order: list[str] = []
        gates = {name: asyncio.Event() for name in "abc"}
        a = asyncio.create_task(hold(flex, gates["a"], order, "a"))
        b = asyncio.create_task(hold(flex, gates["b"], order, "b"))
        c = asyncio.create_task(hold(flex, gates["c"], order, "c"))
        await asyncio.sleep(0)
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        gates["a"].set()
        gates["c"].set()
        await asyncio.wait_for(asyncio.gather(a, c), 5)
        assert (flex.num_running, flex.num_waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["a", "c"]


def test_an_error_inside_the_slot_frees_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        flex = queue(tmp_path, flex_max_running=1)
        with pytest.raises(RuntimeError):
            async with flex.slot():
                raise RuntimeError("the engine failed")
        assert flex.num_running == 0

    asyncio.run(scenario())


def test_a_taken_slot_is_freed_once_however_often_its_release_is_called(tmp_path: Path) -> None:
    """What a streamed flex answer holds: released at the stream's end, by its finally
    and again by the finalizer of a response object, without freeing a slot twice."""

    async def scenario() -> None:
        flex = queue(tmp_path, flex_max_running=1, flex_max_queued=5)
        release = await flex.take()
        waiting = asyncio.create_task(flex.take())
        await asyncio.sleep(0)
        assert (flex.num_running, flex.num_waiting) == (1, 1)
        release()
        release_next = await asyncio.wait_for(waiting, 5)  # the slot changed hands
        release()
        assert (flex.num_running, flex.num_waiting, flex.num_served) == (1, 0, 1)
        release_next()
        release_next()
        assert (flex.num_running, flex.num_served) == (0, 2)

    asyncio.run(scenario())
