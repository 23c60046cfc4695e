"""A batch's background steps (ingest, finalize, cancel, expire): bounded attempts, then an end.

The worker runs at most one background step per batch at a time, in its own task. A
step that fails is tried again after a pause (exponential with full jitter, as request
retries are), up to `[worker] max_batch_step_attempts` failed attempts, counted in the
database (store/batches.py `begin_attempt`) so that a restart or another worker does not
reset the count. An attempt is recorded as it starts, so one that takes its worker down
with it (an input that crashes the process) counts too; those are allowed three times as
many tries, so that a few unrelated crashes (a SIGKILL mid-ingest) do not end a batch.
Once the tries are used up, the step's `give_up` ends the batch instead, with the reason
(its API's `give_up_ingest` or `give_up_end`, worker/lifecycle.py): no batch waits
forever on a step that cannot succeed. A step that knows no later attempt can succeed
(a Message Batch body that cannot be read) raises `Unretryable`: its attempt is counted,
and the give-up runs at once.

Not counted, because none is the batch's fault and each passes: storage faults
(store/faults.py; waited out with a growing pause, as everywhere in the worker) and the
worker stopping. A step without a `give_up` (the Ray hand-off, which falls back to this
worker on its first failure) is retried without a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from freight.errors import FreightError
from freight.store import batches, faults
from freight.store.db import Database

log = logging.getLogger(__name__)

Run = Callable[[], Awaitable[object]]
GiveUp = Callable[[str], Awaitable[object]]
Backoff = Callable[[int], float]
DIED_FACTOR = 3  # attempts in all, counting those whose worker died, per allowed failure


class Unretryable(FreightError):
    """The step cannot succeed, however often it is tried."""


def is_exhausted(history: batches.StepAttempts, max_attempts: int) -> bool:
    """Whether a step has used up its tries (see the module docstring)."""
    return history.num_failed >= max_attempts or history.num_attempts >= DIED_FACTOR * max_attempts


def why_given_up(step: str, history: batches.StepAttempts) -> str:
    """The reason a batch ends without its step, after its tries, in words for its users."""
    if history.num_died:
        tries = (
            f"{step} was tried {history.num_attempts} times, {history.num_died} of them "
            "ending with their worker"
        )
    else:
        tries = f"{step} failed {history.num_failed} times"
    return f"{tries}; the last failure was: {history.last_failure}"


@dataclass(frozen=True)
class Step:
    """One background step of a batch: what runs, and how the batch ends if it cannot.

    `give_up` None: an uncounted step, tried again after a pause whatever happens.
    """

    name: str
    run: Run
    give_up: GiveUp | None


class Steps:
    """Runs each batch's background steps, one at a time per batch, each attempt counted."""

    def __init__(
        self,
        db: Database,
        max_attempts: int,
        backoff: Backoff,
        on_done: Callable[[], None],
    ) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.backoff = backoff  # the pause after the n-th failed attempt
        self.on_done = on_done  # called whenever a step ends: look for what is next
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by batch id
        # By batch id, after a failure: the step and when it may run again (monotonic).
        self._retry_at: dict[str, tuple[str, float]] = {}
        self._storage_backoff: dict[str, faults.Backoff] = {}
        self.num_failed_attempts = 0
        self.num_given_up = 0

    def is_running(self, batch_id: str) -> bool:
        return batch_id in self._tasks

    def can_start(self, batch_id: str, step: str, now: float) -> bool:
        """Nothing runs for the batch, and no pause after a failure of `step` holds it.

        A pause holds back only the step that failed: a cancel does not wait out the
        pause of the ingest it replaces.
        """
        if batch_id in self._tasks:
            return False
        failed_step, retry_at = self._retry_at.get(batch_id, (step, 0.0))
        return failed_step != step or now >= retry_at

    def start(self, batch_id: str, step: Step) -> None:
        """Run `step` of the batch in the background."""
        self._tasks[batch_id] = asyncio.create_task(self._run(batch_id, step))

    async def stop(self) -> None:
        """Cancel every running step (the worker stops); their attempts are not counted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one step -------------------------------------------------------------------

    async def _run(self, batch_id: str, step: Step) -> None:
        pause: float | None = None
        try:
            if step.give_up is None:
                await step.run()
            else:
                pause = await self._attempt(batch_id, step.name, step.run, step.give_up)
            self._storage_backoff.pop(batch_id, None)
        except asyncio.CancelledError:
            raise
        except faults.STORAGE_ERRORS as exc:
            pause = self._pause_after_fault(batch_id)
            log.error(
                "batch %s: %s could not finish: %s; nothing was half-written, and it "
                "starts again in %.1f s",
                batch_id,
                step.name,
                faults.describe(exc),
                pause,
            )
        except Exception:
            # An uncounted step failed, or a give-up did (each has a last resort of its
            # own; past that, there is nothing left to do but try again).
            pause = self._pause_after_fault(batch_id)
            log.exception("batch %s: %s failed; will retry in %.1f s", batch_id, step.name, pause)
        finally:
            self._tasks.pop(batch_id, None)
            if pause is None:
                self._retry_at.pop(batch_id, None)
            else:
                self._retry_at[batch_id] = (step.name, time.monotonic() + pause)
            self.on_done()

    async def _attempt(self, batch_id: str, step: str, run: Run, give_up: GiveUp) -> float | None:
        """One counted attempt (or the give-up); the pause before the next, if one is due."""
        history, event_id = await asyncio.to_thread(self._begin, batch_id, step)
        if event_id is None:
            await self._give_up(batch_id, why_given_up(step, history), give_up)
            return None
        try:
            await run()
        except asyncio.CancelledError:
            await self._forget(event_id)  # the worker stops: not the batch's fault
            raise
        except faults.STORAGE_ERRORS:
            await self._forget(event_id)
            raise  # waited out by _run
        except Unretryable as exc:
            self.num_failed_attempts += 1
            await asyncio.to_thread(self._write, batches.attempt_failed, event_id, exc.message)
            log.error(
                "batch %s: %s attempt failed, and trying again cannot help; giving up",
                batch_id,
                step,
                exc_info=True,
            )
            reason = f"{step} failed, and trying again cannot help: {exc.message}"
            await self._give_up(batch_id, reason, give_up)
            return None
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.num_failed_attempts += 1
            await asyncio.to_thread(self._write, batches.attempt_failed, event_id, reason)
            history = batches.StepAttempts(history.num_failed + 1, history.num_died, reason)
            if not is_exhausted(history, self.max_attempts):
                pause = self.backoff(history.num_failed)
                log.error(
                    "batch %s: %s attempt failed (%d of %d); trying again in %.1f s",
                    batch_id,
                    step,
                    history.num_failed,
                    self.max_attempts,
                    pause,
                    exc_info=True,
                )
                return pause
            log.error(
                "batch %s: %s attempt failed (%d of %d); giving up",
                batch_id,
                step,
                history.num_failed,
                self.max_attempts,
                exc_info=True,
            )
            await self._give_up(batch_id, why_given_up(step, history), give_up)
            return None
        await self._forget(event_id)  # it succeeded: only failures are kept
        return None

    def _pause_after_fault(self, batch_id: str) -> float:
        return self._storage_backoff.setdefault(batch_id, faults.Backoff()).failed(time.monotonic())

    def _begin(self, batch_id: str, step: str) -> tuple[batches.StepAttempts, int | None]:
        """The attempts so far, and the new attempt's event id (None: none are left)."""
        with self.db.write() as conn:
            history = batches.step_attempts(conn, batch_id, step)
            if is_exhausted(history, self.max_attempts):
                return history, None
            return history, batches.begin_attempt(conn, batch_id, step)

    async def _give_up(self, batch_id: str, reason: str, give_up: GiveUp) -> None:
        log.error("batch %s: %s; ending it", batch_id, reason)
        await give_up(reason)  # a storage fault: _run waits it out, and this runs again
        self.num_given_up += 1

    async def _forget(self, event_id: int) -> None:
        # Best effort: if the store is down too, the attempt stays counted, which only
        # ever brings a batch's end nearer.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._write, batches.forget_attempt, event_id)

    def _write(self, fn, *args):  # type: ignore[no-untyped-def]
        with self.db.write() as conn:
            return fn(conn, *args)
