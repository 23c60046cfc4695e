"""Waiting for events, not for time: a deadline-bound wait on a condition, a hand-driven clock.

A test that needs something to have happened waits until it can observe it
(`wait_until`); a test that needs time to have passed advances a `ManualClock` given to
the code under test. Neither sleeps for a guessed while.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 30, interval: float = 0.02, what: str = ""
) -> T:
    """Call `predicate` until it returns something true, and return that.

    Raises TimeoutError naming `what` (what is awaited, or else the predicate) and the
    last value once `timeout` seconds have passed without it.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{_name(predicate, what)} not true after {timeout} s (last: {value!r})"
            )
        time.sleep(interval)
    return value


async def wait_until_async(
    predicate: Callable[[], T], *, timeout: float = 30, interval: float = 0.01, what: str = ""
) -> T:
    """`wait_until` inside an event loop: the loop runs on while it waits."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{_name(predicate, what)} not true after {timeout} s (last: {value!r})"
            )
        await asyncio.sleep(interval)
    return value


def _name(predicate: Callable[[], object], what: str) -> str:
    return what or getattr(predicate, "__qualname__", repr(predicate))


class ManualClock:
    """A clock that moves only when the test says: pass it where code takes a `clock`."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
