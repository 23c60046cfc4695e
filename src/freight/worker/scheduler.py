"""Scheduling policy: which batch requests to admit, and how many. Pure: plain data in.

Batch work is ordered earliest deadline (`expires_at`) first, then oldest batch first.

Real-time first. Real-time requests never pass through the worker: the API sends them
straight to the shared engine with REALTIME_PRIORITY, and vLLM's priority scheduler puts
them ahead of every queued batch request (engines/vllm.py). That alone bounds how long
one waits to *start*: the next free slot of the running batch. It does not bound how
fast it then *runs*: on a saturated engine it shares each step with up to
`max_num_seqs` batch sequences, and a step's time grows with the batch (on CPU nearly
in proportion). So while real-time requests run, and for `realtime_hold_seconds` after
the last one, the worker shrinks its window from `max_in_flight` (2 x max_num_seqs) to
`realtime_batch_window` (`batch_window`): it admits no new batch requests until the
engine holds fewer than that, and takes back the batch requests that are only queued
inside the engine (`num_to_give_back`: those beyond its running slots, not started, so
no work is lost). The running batch then drains to the small window as its requests
finish, and fills back up once real-time traffic stops. Batch throughput pays only
while real-time requests are actually running.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnableBatch:
    id: str
    project: str
    created_at: int
    expires_at: int
    num_open: int


def claim_order(runnable: list[RunnableBatch]) -> list[str]:
    """Batch ids in the order their queued requests should be claimed."""
    ordered = sorted(runnable, key=lambda b: (b.expires_at, b.created_at, b.id))
    return [b.id for b in ordered if b.num_open > 0]


def claim_size(capacity: int, num_in_flight: int) -> int:
    """How many requests to claim now: refill in chunks, not one claim per finished request.

    Claims are database writes; refilling once an eighth of the capacity is free keeps
    the engine's batch full while making ~8 claims per capacity's worth of requests.
    """
    free = capacity - num_in_flight
    if num_in_flight == 0 or free >= max(1, capacity // 8):
        return free
    return 0


def batch_window(
    capacity: int,
    realtime_window: int,
    *,
    num_realtime: int,
    seconds_since_realtime: float | None,
    hold_seconds: float,
) -> int:
    """How many batch requests the engine may hold now (see the module docstring)."""
    is_realtime_recent = num_realtime > 0 or (
        seconds_since_realtime is not None and seconds_since_realtime < hold_seconds
    )
    return min(capacity, realtime_window) if is_realtime_recent else capacity


def num_to_give_back(num_in_flight: int, window: int, max_num_seqs: int) -> int:
    """Batch requests to take back out of the engine when the window has shrunk.

    Only those beyond the engine's running slots: they wait unstarted in its queue, so
    taking them back loses no work. Running ones finish and are simply not replaced.
    """
    return max(0, num_in_flight - max(window, max_num_seqs))
