"""Real-time latency and batch throughput on one shared engine, measured side by side.

One Freight server (API + worker + one warm vLLM engine, start excluded: the shared
`benchmarks/harness.py`) and the official `openai` SDK. Phases, in one run:
  idle      real-time chat requests (max_tokens 16) one after another, engine otherwise idle
  batch     a large chat batch (the mixed workload, max_tokens 64) alone: generated tok/s
  hybrid    the same batch again while real-time clients send requests (each waits
            `--rt-interval` s between its requests) until the batch completes
The hybrid phase runs once per real-time policy (`--policies`): `priority` is vLLM's
priority scheduling alone (the worker's window stays at max_in_flight); `window` adds the
worker's real-time window (worker/scheduler.py) of `--window` requests, `window:N` one of
N. Reported: p50/p95 latency idle and under load, batch tok/s alone and with real-time
load, and the targets
(p95 under load <= 2 x idle p95; batch tok/s >= 0.8 x alone).

    python -m benchmarks.hybrid [--batch-requests 512] [--realtime-requests 20]
        [--rt-clients 1] [--rt-interval 1.0] [--policies priority,window,window:16] [--eager]
        [--name hybrid]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.console import Console

from benchmarks import harness, workloads
from freight import config

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


async def health(client: openai.AsyncOpenAI) -> dict[str, Any]:
    """GET /health: the worker's in-flight count and how many requests it gave back."""
    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient() as http:
        body: dict[str, Any] = (await http.get(f"{base}/health")).json()
    return body


async def hybrid(
    bench: harness.Bench, input_path: Path, args: argparse.Namespace
) -> tuple[harness.Sample, list[float], int]:
    """The batch, with real-time clients running from its first request to its end."""
    client = bench.client
    done = asyncio.Event()
    latencies: list[float] = []
    given_back_before = (await health(client))["worker"]["given_back_for_realtime"]

    async def realtime_client(offset: int) -> None:
        while not done.is_set() and (await health(client))["worker"]["in_flight"] == 0:
            await asyncio.sleep(0.05)  # wait until the batch is in the engine
        i = offset
        while not done.is_set():
            latencies.append(await one_realtime(client, i))
            i += args.rt_clients
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), args.rt_interval)

    clients = [asyncio.create_task(realtime_client(k)) for k in range(args.rt_clients)]
    sample = await bench.freight_api(input_path)
    done.set()
    await asyncio.gather(*clients)
    given_back = (await health(client))["worker"]["given_back_for_realtime"] - given_back_before
    return sample, latencies, given_back


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="freight-hybrid-"))
    input_path = workloads.write(
        workloads.mixed(args.batch_requests, max_tokens=64), tmp / "batch.jsonl"
    )
    bench = harness.Bench(tmp)
    console.print("starting the engine and warming it up (excluded from timings)...")
    await bench.start(engine=config.EngineSettings(enforce_eager=args.eager))  # type: ignore[call-arg]
    settings = bench.settings  # the worker reads these live: the window switches per run
    try:
        await realtime_idle(bench.client, 4)
        idle = await realtime_idle(bench.client, args.realtime_requests)
        console.print(f"idle real-time: {latency_summary(idle)}")
        alone = await bench.freight_api(input_path)
        console.print(f"batch alone: {alone.tokens_per_s:.1f} tok/s")
        policies: dict[str, Any] = {}
        for policy in args.policies.split(","):
            name, _, size = policy.partition(":")
            settings.worker.realtime_batch_window = (
                settings.max_in_flight if name == "priority" else int(size or 0) or args.window
            )
            sample, loaded, given_back = await hybrid(bench, input_path, args)
            policies[policy] = {
                "realtime_window": settings.realtime_batch_window,
                "batch": {"seconds": sample.seconds, "tokens_per_s": sample.tokens_per_s},
                "realtime": latency_summary(loaded),
                "given_back": given_back,
            }
            console.print(
                f"{policy}: batch {sample.tokens_per_s:.1f} tok/s, "
                f"real-time {latency_summary(loaded)}, {given_back} given back"
            )
    finally:
        await bench.stop()
    batch_alone = {"seconds": alone.seconds, "tokens_per_s": alone.tokens_per_s}
    return summarise(args, idle, batch_alone, policies)


def summarise(
    args: argparse.Namespace, idle: list[float], alone: dict[str, Any], policies: dict[str, Any]
) -> dict[str, Any]:
    idle_summary = latency_summary(idle)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": harness.machine(),
        "command": "python -m benchmarks.hybrid " + " ".join(sys.argv[1:]),
        "settings": dict(vars(args)),
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
        result["p95_ratio"] = rt["p95_s"] / idle_summary["p95_s"]
        result["throughput_ratio"] = result["batch"]["tokens_per_s"] / alone["tokens_per_s"]
        print(
            f"| {name} (window {result['realtime_window']}) | {rt['p50_s']:.3f} / "
            f"{rt['p95_s']:.3f} (n={rt['count']}) | {result['p95_ratio']:.2f} "
            f"| {result['batch']['tokens_per_s']:.1f} | {result['throughput_ratio']:.2f} |"
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
    parser.add_argument("--name", default="hybrid", help="results/NAME.json")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{arguments.name}.json").write_text(json.dumps(result, indent=1))
