"""The real-time window policy on plain data: how much batch work the engine may hold
while real-time requests run, and what the worker takes back (worker/scheduler.py)."""

from __future__ import annotations

from freight.worker import scheduler


def window(num_realtime: int, since: float | None, *, capacity: int = 512) -> int:
    return scheduler.batch_window(
        capacity, 64, num_realtime=num_realtime, seconds_since_realtime=since, hold_seconds=2.0
    )


def test_full_window_without_real_time_traffic() -> None:
    assert window(0, None) == 512
    assert window(0, 2.5) == 512  # the last real-time request ended longer ago than the hold


def test_small_window_while_real_time_requests_run_and_for_the_hold_after() -> None:
    assert window(1, None) == 64
    assert window(3, 10.0) == 64
    assert window(0, 0.0) == 64
    assert window(0, 1.9) == 64


def test_the_real_time_window_never_exceeds_the_capacity() -> None:
    assert window(1, None, capacity=16) == 16


def test_give_back_only_what_waits_beyond_the_running_slots() -> None:
    # 512 in flight, 256 running slots: the 256 queued ones come back out, none running
    assert scheduler.num_to_give_back(512, 64, max_num_seqs=256) == 256
    assert scheduler.num_to_give_back(300, 64, max_num_seqs=256) == 44
    assert scheduler.num_to_give_back(200, 64, max_num_seqs=256) == 0
    # a window above the running slots keeps that many
    assert scheduler.num_to_give_back(512, 400, max_num_seqs=256) == 112
    assert scheduler.num_to_give_back(0, 64, max_num_seqs=256) == 0


def test_no_claims_past_a_shrunk_window() -> None:
    assert scheduler.claim_size(64, 200) == 0
    assert scheduler.claim_size(64, 40) == 24
