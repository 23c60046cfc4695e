"""The real-time window policy on plain data: how much batch work the engine may hold
while real-time requests run, and what the worker takes back (worker/scheduler.py),
for engines on CPU and on GPUs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from freight.config import EngineSettings, Settings, WorkerSettings
from freight.worker import scheduler
from freight.worker.scheduler import EngineWidth

CPU_POLICY = scheduler.WindowPolicy(
    "cpu",
    capacity=512,
    realtime_window=64,
    hold_seconds=2.0,
    max_num_seqs=256,
    preempt=True,
    holds_admission=True,
)


def window(
    num_realtime: int, since: float | None, *, capacity: int = 512, in_flight: int = 512
) -> int:
    policy = dataclasses.replace(CPU_POLICY, capacity=capacity)
    return scheduler.batch_window(
        policy, num_in_flight=in_flight, num_realtime=num_realtime, seconds_since_realtime=since
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
    policy = dataclasses.replace(CPU_POLICY, realtime_window=512)
    assert (
        scheduler.batch_window(policy, num_in_flight=40, num_realtime=1, seconds_since_realtime=0.0)
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


# --- the policy by device class ------------------------------------------------------------


def settings(tmp_path: Path, *, engine: dict[str, Any] | None = None, **worker: Any) -> Settings:
    return Settings(
        home=tmp_path,
        engine=EngineSettings(**engine or {}),
        worker=WorkerSettings(realtime_hold_seconds=2.0, **worker),
    )


def test_on_cpu_the_policy_is_the_small_window_with_preemption(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert scheduler.window_policy(s, []) == CPU_POLICY  # no engine started yet
    # the CPU engine's own width is not read: [engine] max_num_seqs or 256, as always
    assert scheduler.window_policy(s, [EngineWidth("cpu", 128)]) == CPU_POLICY
    # echo and upstream engines do not make it a GPU
    assert scheduler.window_policy(s, [EngineWidth("remote", 1024)]) == CPU_POLICY
    narrow = scheduler.window_policy(settings(tmp_path, engine={"max_num_seqs": 8}), [])
    assert (narrow.capacity, narrow.realtime_window, narrow.max_num_seqs) == (16, 2, 8)


def test_on_cpu_set_worker_settings_win(tmp_path: Path) -> None:
    s = settings(tmp_path, max_in_flight=100, realtime_batch_window=10, realtime_preempt=False)
    policy = scheduler.window_policy(s, [EngineWidth("cpu", 256)])
    assert (policy.capacity, policy.realtime_window, policy.preempt) == (100, 10, False)
    assert policy.holds_admission


def test_on_a_gpu_the_batch_keeps_the_started_engines_full_width(tmp_path: Path) -> None:
    # [engine] max_num_seqs unset: vLLM chose 1024 on this H100; the worker reads it
    policy = scheduler.window_policy(settings(tmp_path), [EngineWidth("cuda:0", 1024)])
    assert policy == scheduler.WindowPolicy(
        "cuda",
        capacity=2048,
        realtime_window=1024,
        hold_seconds=2.0,
        max_num_seqs=1024,
        preempt=False,
        holds_admission=False,
    )


def test_a_gpu_engine_beside_cpu_ones_decides_and_the_widest_counts(tmp_path: Path) -> None:
    engines = [
        EngineWidth("cpu", 256),
        EngineWidth("cuda:0", 512),
        EngineWidth("cuda:1,2 (tensor parallel 2)", 1024),
    ]
    policy = scheduler.window_policy(settings(tmp_path), engines)
    assert (policy.device_class, policy.max_num_seqs, policy.capacity) == ("cuda", 1024, 2048)


def test_on_a_gpu_set_worker_settings_win(tmp_path: Path) -> None:
    s = settings(tmp_path, max_in_flight=600, realtime_batch_window=128, realtime_preempt=True)
    policy = scheduler.window_policy(s, [EngineWidth("cuda:0", 1024)])
    assert (policy.capacity, policy.realtime_window, policy.preempt) == (600, 128, True)


def test_on_a_gpu_real_time_traffic_takes_back_only_queued_batch_work(tmp_path: Path) -> None:
    policy = scheduler.window_policy(settings(tmp_path), [EngineWidth("cuda:0", 1024)])
    during = scheduler.batch_window(
        policy, num_in_flight=2048, num_realtime=3, seconds_since_realtime=None
    )
    assert during == 1024  # the running batch's full width
    # the 1024 queued beyond the running slots come out; every running one stays
    taken = scheduler.num_to_give_back(2048, during, policy.max_num_seqs, preempt=policy.preempt)
    assert taken == 1024
    # admission goes on while real time runs: new batch requests queue behind it
    assert (
        scheduler.batch_window(
            policy, num_in_flight=800, num_realtime=3, seconds_since_realtime=None
        )
        == 1024
    )
    assert scheduler.claim_size(1024, 800) == 224
    # after the hold, the queue behind the running batch fills again
    assert (
        scheduler.batch_window(policy, num_in_flight=1024, num_realtime=0, seconds_since_realtime=5)
        == 2048
    )
