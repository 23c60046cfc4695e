"""Real-time latency and batch throughput on one shared engine, measured side by side.

One Freight server (API + worker + one warm vLLM engine, start excluded) and the
official `openai` SDK. Phases, in one run:
  idle      real-time chat requests (max_tokens 16) one after another, engine otherwise idle
  batch     a large chat batch (the mixed workload, max_tokens 64) alone: generated tok/s
  hybrid    the same batch again while real-time clients send requests (each waits
            `--rt-interval` s between its requests) until the batch completes
The hybrid phase runs once per real-time policy (`--policies`): `priority` is vLLM's
priority scheduling alone (the worker's window stays at max_in_flight); `window` adds the
worker's real-time window (worker/scheduler.py). Reported: p50/p95 latency idle and under
load, batch tok/s alone and with real-time load, and the targets
(p95 under load <= 2 x idle p95; batch tok/s >= 0.8 x alone).

    python -m benchmarks.hybrid [--batch-requests 512] [--realtime-requests 20]
        [--rt-clients 1] [--rt-interval 1.0] [--policies priority,window] [--eager]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn
from rich.console import Console

from benchmarks import workloads
from freight import config
from freight.api.app import create_app
from freight.engines.pool import EnginePool
from freight.models import Registry
from freight.service import Service

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
console = Console(stderr=True)
QUESTIONS = [
    "What is the capital of France?",
    "Give me one word that rhymes with cat.",
    "Name a colour of the rainbow.",
    "What is two plus two?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "count": len(seconds),
        "p50_s": percentile(seconds, 0.5) if seconds else None,
        "p95_s": percentile(seconds, 0.95) if seconds else None,
    }


async def one_realtime(client: openai.AsyncOpenAI, i: int) -> float:
    started = time.perf_counter()
    reply = await client.chat.completions.create(
        model=workloads.MODEL,
        messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content is not None
    return time.perf_counter() - started


async def realtime_idle(client: openai.AsyncOpenAI, num: int) -> list[float]:
    return [await one_realtime(client, i) for i in range(num)]


async def run_batch(
    client: openai.AsyncOpenAI, input_path: Path, started_event: asyncio.Event | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    uploaded = await client.files.create(file=input_path, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        if started_event is not None and batch.status == "in_progress":
            started_event.set()
        await asyncio.sleep(0.1)
        batch = await client.batches.retrieve(batch.id)
    seconds = time.perf_counter() - started
    assert batch.status == "completed" and batch.usage is not None, batch
    return {
        "seconds": seconds,
        "output_tokens": batch.usage.output_tokens,
        "tokens_per_s": batch.usage.output_tokens / seconds,
    }


async def hybrid(
    client: openai.AsyncOpenAI, input_path: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], list[float]]:
    """The batch, with real-time clients running from its start to its end."""
    running = asyncio.Event()
    done = asyncio.Event()
    latencies: list[float] = []

    async def realtime_client(offset: int) -> None:
        await running.wait()
        i = offset
        while not done.is_set():
            latencies.append(await one_realtime(client, i))
            i += args.rt_clients
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), args.rt_interval)

    clients = [asyncio.create_task(realtime_client(k)) for k in range(args.rt_clients)]
    result = await run_batch(client, input_path, running)
    done.set()
    await asyncio.gather(*clients)
    return result, latencies


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="freight-hybrid-"))
    engine = config.EngineSettings(enforce_eager=args.eager)  # type: ignore[call-arg]
    settings = config.Settings(
        home=tmp / "home", model_cache=REPO / ".freight" / "models", engine=engine
    )
    input_path = workloads.write(
        workloads.mixed(args.batch_requests, max_tokens=64), tmp / "batch.jsonl"
    )
    pool = EnginePool(settings, Registry(settings))
    console.print("starting the engine (excluded from timings)...")
    await pool.get(workloads.MODEL)
    svc = Service(settings, engines=pool)
    port = 8900 + (int(time.time()) % 90)
    server = uvicorn.Server(
        uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", timeout=3600
    )
    try:
        warm = workloads.write(workloads.mixed(16, seed=99, max_tokens=16), tmp / "warm.jsonl")
        await run_batch(client, warm)
        await realtime_idle(client, 4)

        idle = await realtime_idle(client, args.realtime_requests)
        console.print(f"idle real-time: {latency_summary(idle)}")
        alone = await run_batch(client, input_path)
        console.print(f"batch alone: {alone['tokens_per_s']:.1f} tok/s")
        policies: dict[str, Any] = {}
        for policy in args.policies.split(","):
            # the worker reads its settings live: the window switches between runs
            settings.worker.realtime_batch_window = (
                settings.max_in_flight if policy == "priority" else args.window
            )
            assert svc.worker is not None
            given_back_before = svc.worker.num_given_back
            batch, loaded = await hybrid(client, input_path, args)
            policies[policy] = {
                "realtime_window": settings.realtime_batch_window,
                "batch": batch,
                "realtime": latency_summary(loaded),
                "given_back": svc.worker.num_given_back - given_back_before,
            }
            console.print(
                f"{policy}: batch {batch['tokens_per_s']:.1f} tok/s, "
                f"real-time {latency_summary(loaded)}"
            )
    finally:
        server.should_exit = True
        await serving
        await pool.shutdown()
    return summarise(args, idle, alone, policies)


def summarise(
    args: argparse.Namespace, idle: list[float], alone: dict[str, Any], policies: dict[str, Any]
) -> dict[str, Any]:
    idle_summary = latency_summary(idle)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "command": "python -m benchmarks.hybrid " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items()},
        "idle_realtime": idle_summary,
        "batch_alone": alone,
        "hybrid": policies,
    }
    print(
        "| real-time policy | real-time p50 / p95 (s) | p95 vs idle (target <= 2) "
        "| batch tok/s | vs alone (target >= 0.8) |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| idle engine / batch alone | {idle_summary['p50_s']:.3f} / {idle_summary['p95_s']:.3f} "
        f"| 1.00 | {alone['tokens_per_s']:.1f} | 1.00 |"
    )
    for name, result in policies.items():
        rt = result["realtime"]
        if rt["count"] == 0:
            print(f"| {name} | no real-time request finished during the batch | | | |")
            continue
        latency_ratio = rt["p95_s"] / idle_summary["p95_s"]
        throughput_ratio = result["batch"]["tokens_per_s"] / alone["tokens_per_s"]
        result["p95_ratio"] = latency_ratio
        result["throughput_ratio"] = throughput_ratio
        print(
            f"| {name} (window {result['realtime_window']}) | {rt['p50_s']:.3f} / "
            f"{rt['p95_s']:.3f} (n={rt['count']}) | {latency_ratio:.2f} "
            f"| {result['batch']['tokens_per_s']:.1f} | {throughput_ratio:.2f} |"
        )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch-requests", type=int, default=512)
    parser.add_argument("--realtime-requests", type=int, default=20, help="idle phase")
    parser.add_argument("--rt-clients", type=int, default=1)
    parser.add_argument("--rt-interval", type=float, default=1.0, help="seconds between requests")
    parser.add_argument("--policies", default="priority,window")
    parser.add_argument("--window", type=int, default=None, help="default max_num_seqs / 4")
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (faster start)")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hybrid.json").write_text(json.dumps(result, indent=1))
