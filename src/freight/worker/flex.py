"""The flex tier's queue: single requests that wait their turn with batch work.

A real-time request sent with `service_tier: "flex"` (a Freight extension of the
`service_tier` the SDKs already send) takes a slot here before it reaches the engine: at
most `flex_max_running` ([scheduler]) run at once, at FLEX_PRIORITY (after real-time
requests, before queued batch requests), and the worker claims that many fewer batch
requests meanwhile (worker/scheduler.py, `batch_claim_room`). At most `flex_max_queued`
wait for a slot, first come first served; one more, or one still waiting after
`flex_max_wait_seconds`, is refused with FlexUnavailable (429 with Retry-After), so a
flood costs bounded memory and never a 500.

Everything runs on the API's event loop: plain counters suffice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from freight.config import Settings
from freight.errors import FlexUnavailable
from freight.protocol.endpoints import TokenCounts
from freight.store import faults, flex_usage
from freight.store.db import Database
from freight.worker import scheduler

log = logging.getLogger(__name__)

MEAN_WEIGHT = 0.2  # weight of the newest flex request in the mean time one takes


class FlexQueue:
    """Slots for flex requests in the engine, and the bounded line of those waiting."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings  # read on each request: a changed setting applies at once
        self.clock = clock
        self.num_running = 0
        self.num_served = 0
        self.num_refused = 0
        self.mean_seconds: float | None = None  # how long one held its slot, on average
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def max_running(self) -> int:
        return self.settings.flex_max_running

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a flex slot for the body of the `async with`; FlexUnavailable if none
        frees up within `flex_max_wait_seconds` or the line is full."""
        release = await self.take()
        try:
            yield
        finally:
            release()

    async def take(self) -> Callable[[], None]:
        """Take a flex slot (as `slot`) and hold it until the returned function is called:
        for a streamed answer, which ends after the handler returns. Calls after the
        first do nothing, so every way a stream can end may call it."""
        await self._acquire()
        started = self.clock()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._observe(self.clock() - started)
                self._release()

        return release

    async def _acquire(self) -> None:
        options = self.settings.scheduler
        if self.num_running < self.max_running and not self._waiting:
            self.num_running += 1
            return
        if len(self._waiting) >= options.flex_max_queued:
            raise self._refuse(
                f"The flex queue is full: {options.flex_max_queued} waiting "
                "([scheduler] flex_max_queued)"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), options.flex_max_wait_seconds)
        except TimeoutError:
            if waiter.done():  # handed a slot just as the wait ran out: it is ours
                return
            waiter.cancel()
            self._forget(waiter)
            raise self._refuse(
                f"No flex capacity freed up within {options.flex_max_wait_seconds:g} s "
                "([scheduler] flex_max_wait_seconds)"
            ) from None
        except asyncio.CancelledError:  # the client went away while waiting
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot it was handed goes to the next one
            else:
                waiter.cancel()
                self._forget(waiter)
            raise

    def _release(self) -> None:
        """Hand the slot to the first one still waiting, else free it."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # num_running stays: the slot changes hands
                return
        self.num_running -= 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)

    def _observe(self, seconds: float) -> None:
        self.num_served += 1
        if self.mean_seconds is None:
            self.mean_seconds = seconds
        else:
            self.mean_seconds += MEAN_WEIGHT * (seconds - self.mean_seconds)

    def _refuse(self, why: str) -> FlexUnavailable:
        self.num_refused += 1
        retry_after = scheduler.flex_retry_after(
            len(self._waiting),
            self.max_running,
            self.mean_seconds,
            self.settings.scheduler.flex_max_wait_seconds,
        )
        return FlexUnavailable(
            f"{why}; retry after {retry_after} s, or send the request without "
            "service_tier 'flex' to be served in real time",
            retry_after=retry_after,
        )


async def record_usage(db: Database, project: str, model: str, tokens: TokenCounts) -> None:
    """Add a served flex request to `project`'s usage (`freight report` prices it as batch
    work). A store that cannot be written now loses this one row, said in the log: the
    answer is already computed and goes to the client."""

    def write() -> None:
        with db.write() as conn:
            flex_usage.record_request(
                conn,
                project=project,
                model=model,
                at=time.time(),
                input_tokens=tokens.num_input,
                cached_tokens=tokens.num_cached,
                output_tokens=tokens.num_output,
            )

    try:
        await asyncio.to_thread(write)
    except faults.STORAGE_ERRORS as exc:
        log.error(
            "could not record a flex request of project %s (%s, %d+%d tokens): %s",
            project,
            model,
            tokens.num_input,
            tokens.num_output,
            faults.describe(exc),
        )
