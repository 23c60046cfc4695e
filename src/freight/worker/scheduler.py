"""Scheduling policy: which batch requests to admit, in what order, and how many. Pure:
plain data in, decisions out; the worker (worker/dispatcher.py) acts on them.

Order. Batch work is shared fairly between projects (`fair_claims`: an equal part of
every refill each), then ordered across a project's batches by `priority` (a Freight
extension set at create: higher first), then earliest deadline (`expires_at`) first, then
oldest; what a project cannot use of its share goes to the others in that same order.
Priority never takes another project's share: it orders a project's own batches and the
spare capacity. Within a batch, requests are claimed by admission key
(shared prompt prefixes together, long outputs first) and identical deterministic
requests are computed once; `[scheduler]` switches each of these off. Claims refill the
engine in chunks (`claim_size`).

Flex. Single requests sent with `service_tier: "flex"` wait in the API's flex queue
(worker/flex.py) and then go to the engine with FLEX_PRIORITY, between real time and
batch work; the worker claims as many fewer batch requests as flex requests run
(`batch_claim_room`), so flex takes the next free slots ahead of queued batch work.

Real time first. Real-time requests never pass through the worker: the API sends them
straight to the shared engine with REALTIME_PRIORITY, and vLLM's priority scheduler
puts them ahead of every queued batch request (engines/vllm_engine.py). They still share each
engine step with the batch sequences running beside them, so the worker also keeps a
real-time window (`batch_window`, settings in `[worker]`):
- while real-time requests run, and for `realtime_hold_seconds` after the last one, at
  most `realtime_batch_window` batch requests (default max_num_seqs / 4 on CPU) stay in the
  engine;
- while a real-time request is in the engine, no new batch request is admitted: the
  running ones decode beside it and drain, and their replacements' prompts are prefilled
  between real-time requests (one that arrives during a refill waits for it);
- when real-time traffic starts, the batch requests beyond the window come back out of
  the engine at once (`num_to_give_back`), running or not: they return to the queue
  with their try not counted and later run again from the start. With
  `realtime_preempt = false` only those not yet started come back; the rest finish;
- a window of `max_in_flight` or more is no window: priority scheduling alone.
When real-time traffic has stopped for `realtime_hold_seconds`, batch work fills the
engine again. What each window costs the batch and gains real-time requests is
measured in BENCHMARKS.md (Real time beside batch work).

By device (`window_policy`). The rules above are the CPU's, where a step's time grows
with the batch beside the real-time requests. On a GPU a step costs about the same at
any width, so once a vLLM engine on CUDA has started the defaults change: the window is
the engine's whole max_num_seqs as the started engine reports it (vLLM's choice when
`[engine] max_num_seqs` is unset) and `max_in_flight` twice that; batch requests keep
being admitted while real-time ones run (they queue behind them in vLLM's priority
queue), and nothing running is preempted: only the batch requests queued beyond the
running slots come back out, so real-time requests take the next free slots. Set
`[worker]` values win on either device.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from freight.config import MAX_BATCH_PRIORITY, SchedulerSettings, Settings
from freight.engines.base import BATCH_PRIORITY


@dataclass(frozen=True)
class RunnableBatch:
    id: str
    project: str
    created_at: int
    expires_at: int
    num_open: int
    priority: int = 0  # higher first


def engine_priority(batch_priority: int) -> int:
    """The priority a batch request carries into the engine (vLLM runs lower numbers
    first): after real-time and flex requests (engines/base.py), then by its batch's
    priority, higher first: batch priorities 1000..-1000 become 0..2000. So the order
    in which the worker claims batches (`claim_order`) holds inside the engine too, when
    requests of several batches wait there for a free slot."""
    return BATCH_PRIORITY + MAX_BATCH_PRIORITY - batch_priority


def _in_order(runnable: list[RunnableBatch]) -> list[RunnableBatch]:
    """Highest priority first; within a priority earliest deadline first, then oldest."""
    ordered = sorted(runnable, key=lambda b: (-b.priority, b.expires_at, b.created_at, b.id))
    return [b for b in ordered if b.num_open > 0]


def claim_order(runnable: list[RunnableBatch]) -> list[str]:
    """Batch ids in the order their queued requests should be claimed."""
    return [b.id for b in _in_order(runnable)]


def fair_claims(runnable: list[RunnableBatch], want: int, turn: int = 0) -> list[tuple[str, int]]:
    """Split `want` claims between projects, then each project's share between its batches.

    Fair share between projects: every project with open requests gets an equal part of
    each refill (what one cannot use goes to the others), whatever the size of its
    batches, so a project's million-request batch cannot starve another's small one.
    `turn` rotates which projects get the odd claims left over by the division. Within a
    project, batches are served in `claim_order`. Returns (batch id, number) pairs.
    """
    by_project: dict[str, list[RunnableBatch]] = {}
    for batch in _in_order(runnable):
        by_project.setdefault(batch.project, []).append(batch)
    names = sorted(by_project)
    if not names:
        return []
    start = turn % len(names)
    names = names[start:] + names[:start]
    demand = {name: sum(b.num_open for b in by_project[name]) for name in names}
    shares = dict.fromkeys(names, 0)
    hungry = list(names)
    while want > 0 and hungry:
        part = max(1, want // len(hungry))
        for name in list(hungry):
            give = min(part, demand[name] - shares[name], want)
            shares[name] += give
            want -= give
            if shares[name] == demand[name]:
                hungry.remove(name)
            if want == 0:
                break
    plan = []
    for name in names:
        left = shares[name]
        for batch in by_project[name]:
            if left <= 0:
                break
            take = min(left, batch.num_open)
            plan.append((batch.id, take))
            left -= take
    return plan


def batch_claim_room(window: int, num_flex_running: int) -> int:
    """The batch window less the flex requests in the engine: flex requests queue with
    batch work, ahead of it, so each one running is one batch request fewer claimed."""
    return max(0, window - num_flex_running)


def flex_retry_after(
    num_waiting: int, max_running: int, mean_seconds: float | None, max_wait_seconds: float
) -> int:
    """Seconds a refused flex request should wait (its Retry-After): the queue ahead of it
    drained at `max_running` at a time, each taking `mean_seconds` (the flex requests'
    measured mean; 1 s before any finished), at least 1 s and at most the longest wait."""
    per_request = 1.0 if mean_seconds is None else mean_seconds
    rounds = (num_waiting + max_running) // max(1, max_running)
    return max(1, min(math.ceil(max_wait_seconds), math.ceil(rounds * per_request)))


def claim_size(capacity: int, num_in_flight: int) -> int:
    """How many requests to claim now: refill in chunks, not one claim per finished request.

    Claims are database writes; refilling once an eighth of the capacity is free keeps
    the engine's batch full while making ~8 claims per capacity's worth of requests.
    """
    free = capacity - num_in_flight
    if num_in_flight == 0 or free >= max(1, capacity // 8):
        return free
    return 0


# --- order within a batch ------------------------------------------------------------------
#
# Every request gets two keys when its batch is ingested:
#   admission key  requests are claimed in this order. Requests that share a prompt prefix
#                  get adjacent keys (the key starts with the prompt text), so they reach
#                  the engine together and its prefix cache hits; with length-aware
#                  admission the key starts with a bucket of the requested output length,
#                  longest first, so long generations start early and overlap the short
#                  ones instead of trailing alone at the end of the batch.
#   dedup key      identical deterministic requests (same endpoint and body, temperature 0)
#                  share it; the worker computes them once and gives each its own line.

ADMISSION_KEY_CHARS = 512
_NO_LIMIT_BUCKET = 99


@dataclass(frozen=True)
class OrderPolicy:
    """Which of the within-batch optimisations are on (each can be switched off)."""

    prefix_grouping: bool = True
    length_aware: bool = True
    deduplicate: bool = True

    @classmethod
    def from_settings(cls, options: SchedulerSettings) -> OrderPolicy:
        """The `[scheduler]` switches of the within-batch optimisations."""
        return cls(options.prefix_grouping, options.length_aware, options.deduplicate)


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt as plain text, roles included, in the order the model reads it."""
    messages = body.get("messages")
    if isinstance(messages, list):
        system = body.get("system")  # Anthropic's top-level system prompt
        parts = (
            [f"system:{system if isinstance(system, str) else json.dumps(system)}"]
            if system
            else []
        )
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role')}:{content}")
        return "\n".join(parts)
    for field in ("instructions", "input", "prompt"):
        value = body.get(field)
        if value is not None:
            return value if isinstance(value, str) else json.dumps(value)
    return ""


def _length_bucket(body: dict[str, Any]) -> int:
    """log2 bucket of the requested output length (0-98); 99 when unlimited."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = limit or body.get("max_output_tokens")
    if not isinstance(limit, int) or limit <= 0:
        return _NO_LIMIT_BUCKET
    return min(limit.bit_length(), _NO_LIMIT_BUCKET - 1)


def admission_key(body: dict[str, Any], policy: OrderPolicy) -> str:
    """The claim-order key of one request (see the comment above). Empty: file order."""
    key = ""
    if policy.length_aware:
        key += f"{_NO_LIMIT_BUCKET - _length_bucket(body):02d}|"
    if policy.prefix_grouping:
        key += prompt_text(body)[:ADMISSION_KEY_CHARS]
    return key


def dedup_key(url: str, body: dict[str, Any], policy: OrderPolicy) -> str | None:
    """A digest shared by identical deterministic requests, or None."""
    if not policy.deduplicate or body.get("temperature") != 0 or (body.get("n") or 1) != 1:
        return None
    canonical = json.dumps([url, body], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


# --- the real-time window -----------------------------------------------------------------

DeviceClass = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class EngineWidth:
    """A started text generation engine, as the window policy sees it."""

    device: str  # its device label (pool.devices()): 'cpu', 'cuda:0', 'cuda:0,1 (...)', 'remote'
    max_num_seqs: int  # its running batch's width, as the started engine reports it


@dataclass(frozen=True)
class WindowPolicy:
    """How much batch work the worker keeps in the engine, and how it makes room for
    real-time requests; chosen by the engines' device class (`window_policy`)."""

    device_class: DeviceClass
    capacity: int  # batch requests in the engine while no real-time request runs
    realtime_window: int  # ... while real-time requests run, and for `hold_seconds` after
    hold_seconds: float
    max_num_seqs: int  # the engine's running slots
    preempt: bool  # running batch requests beyond the window come out too, not only queued
    holds_admission: bool  # no new batch request while a real-time one is in the engine


def window_policy(settings: Settings, engines: Iterable[EngineWidth]) -> WindowPolicy:
    """The policy for the engines started so far; `[worker]` settings that are set win.

    CPU (and echo, upstreams, or no engine started yet): a step's time grows with the
    batch, so real time gets a small window (max_num_seqs / 4), preemption, and no new
    batch admissions while it runs, sized by `[engine] max_num_seqs` or 256.
    CUDA (a started vLLM engine on a GPU): a step costs about the same at any width, so
    the batch keeps the engine's full width as the started engine reports it (vLLM's
    per-device choice, 1024 on H100/H200), and real-time requests rely on vLLM's
    priority scheduling: during real-time traffic the batch requests queued beyond the
    running slots come out, none that run, and admission goes on (new batch requests
    queue behind the real-time ones).
    """
    worker = settings.worker
    cuda_widths = [e.max_num_seqs for e in engines if e.device.startswith("cuda")]
    if not cuda_widths:
        return WindowPolicy(
            "cpu",
            capacity=settings.max_in_flight,
            realtime_window=settings.realtime_batch_window,
            hold_seconds=worker.realtime_hold_seconds,
            max_num_seqs=settings.max_num_seqs,
            preempt=True if worker.realtime_preempt is None else worker.realtime_preempt,
            holds_admission=True,
        )
    width = max(cuda_widths)
    window = worker.realtime_batch_window
    return WindowPolicy(
        "cuda",
        capacity=worker.max_in_flight or 2 * width,
        realtime_window=width if window is None else window,
        hold_seconds=worker.realtime_hold_seconds,
        max_num_seqs=width,
        preempt=bool(worker.realtime_preempt),
        holds_admission=False,
    )


def batch_window(
    policy: WindowPolicy,
    *,
    num_in_flight: int,
    num_realtime: int,
    seconds_since_realtime: float | None,
) -> int:
    """How many batch requests the engine may hold now (see the module docstring)."""
    if policy.realtime_window >= policy.capacity:  # no window: priority scheduling alone
        return policy.capacity
    if num_realtime > 0:  # a real-time request is in the engine
        if policy.holds_admission:  # CPU: admit nothing new, the batch drains beside it
            return min(policy.realtime_window, num_in_flight)
        return policy.realtime_window  # CUDA: new batch requests queue behind real time
    if seconds_since_realtime is not None and seconds_since_realtime < policy.hold_seconds:
        return policy.realtime_window
    return policy.capacity


def num_to_give_back(num_in_flight: int, window: int, max_num_seqs: int, *, preempt: bool) -> int:
    """Batch requests to take back out of the engine when the window has shrunk.

    With `preempt`, every one beyond the window (the youngest, running or not). Without,
    only those beyond the engine's running slots: they wait unstarted in its queue, so
    taking them back loses no work; running ones finish and are simply not replaced.
    """
    return max(0, num_in_flight - (window if preempt else max(window, max_num_seqs)))
