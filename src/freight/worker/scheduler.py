"""Scheduling policy: which batches' requests to admit next. Pure: plain data in, order out.

Real-time requests never pass through here: they go straight to the engine with a
higher priority (see engines/vllm.py). This module orders batch work:
earliest deadline (`expires_at`) first, then oldest batch first.
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
