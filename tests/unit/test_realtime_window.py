"""The real-time window policy on plain data: how much batch work the engine may hold
while real-time requests run, and what the worker takes back (worker/scheduler.py)."""

from __future__ import annotations

from freight.worker import scheduler


def window(
    num_realtime: int, since: float | None, *, capacity: int = 512, in_flight: int = 512
) -> int:
    return scheduler.batch_window(
        capacity,
        64,
        num_in_flight=in_flight,
        num_realtime=num_realtime,
        seconds_since_realtime=since,
        hold_seconds=2.0,
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


def test_a_window_as_large_as_the_capacity_turns_it_off() -> None:
    assert (
        scheduler.batch_window(
            512, 512, num_in_flight=40, num_realtime=1, seconds_since_realtime=0.0, hold_seconds=2.0
        )
        == 512
    )


def test_no_batch_admission_while_a_real_time_request_is_in_the_engine() -> None:
    # the batch drains beside it; its replacements are prefilled in the gaps
    assert window(1, None, in_flight=40) == 40
    assert scheduler.claim_size(window(1, None, in_flight=40), 40) == 0
    assert window(1, None, in_flight=0) == 0
    # between real-time requests (within the hold) it refills up to the window
    assert window(0, 0.5, in_flight=40) == 64
    assert scheduler.claim_size(window(0, 0.5, in_flight=40), 40) == 24


def test_preempt_gives_back_everything_beyond_the_window() -> None:
    assert scheduler.num_to_give_back(512, 64, max_num_seqs=256, preempt=True) == 448
    assert scheduler.num_to_give_back(200, 64, max_num_seqs=256, preempt=True) == 136
    assert scheduler.num_to_give_back(64, 64, max_num_seqs=256, preempt=True) == 0
    assert scheduler.num_to_give_back(10, 64, max_num_seqs=256, preempt=True) == 0


def test_without_preempt_give_back_only_what_waits_beyond_the_running_slots() -> None:
    # 512 in flight, 256 running slots: the 256 queued ones come back out, none running
    assert scheduler.num_to_give_back(512, 64, max_num_seqs=256, preempt=False) == 256
    assert scheduler.num_to_give_back(300, 64, max_num_seqs=256, preempt=False) == 44
    assert scheduler.num_to_give_back(200, 64, max_num_seqs=256, preempt=False) == 0
    # a window above the running slots keeps that many
    assert scheduler.num_to_give_back(512, 400, max_num_seqs=256, preempt=False) == 112
    assert scheduler.num_to_give_back(0, 64, max_num_seqs=256, preempt=False) == 0


def test_no_claims_past_a_shrunk_window() -> None:
    assert scheduler.claim_size(64, 200) == 0
    assert scheduler.claim_size(64, 40) == 24
