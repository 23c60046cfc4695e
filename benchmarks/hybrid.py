"""Real-time latency and batch throughput on one shared engine, measured side by side.

One Freight server (API + worker + one warm vLLM engine, start excluded:
benchmarks/systems.py) and the official `openai` SDK. Phases, per repeat:
  idle      real-time chat requests (max_tokens 16) one after another, engine otherwise
            idle (`--realtime-requests`, at least 60 by default)
  alone     a chat batch (the mixed workload, max_tokens 64) alone: delivered tok/s
  policies  the same batch again while real-time requests arrive, until it completes,
            once per real-time policy (`--policies`), in a fresh seeded random order
  flex      the same batch again while the same arrivals are sent with
            `service_tier: "flex"` (Freight's flex tier: queued with batch work, ahead of
            it): their latencies and refusals (429) beside the batch's throughput
            (`--no-flex` skips it)
Real-time arrivals are open-loop by default (`--arrival open`: Poisson at `--rate` per
second, seeded, each sent when it is due whatever the others are doing), or closed-loop
(`--arrival closed`: `--rt-clients` clients each waiting `--rt-interval` s after every
answer). `priority` is vLLM's priority scheduling alone (the worker's window stays at
max_in_flight); `window` adds the worker's real-time window (worker/scheduler.py) of
max_num_seqs / 4 requests, `window:N` one of N. Every latency is stored raw, with its
send time; ratios are to the same repeat's idle p95 and batch-alone rate. Targets:
p95 under load <= 2 x idle p95 and batch tok/s >= 0.8 x alone, together.

    python -m benchmarks.hybrid [--batch-requests 112] [--realtime-requests 60]
        [--arrival open --rate 1.25 | --arrival closed --rt-interval 1]
        [--policies priority,window] [--no-flex] [--repeats 3] [--quick] [--name hybrid]

The defaults are chosen to fit three repeats in the full suite's 90 minutes: in the
run at 2e52574 (an AMD EPYC with bf16 instructions) a 256-request batch took about
130 s alone and three repeats 31 minutes, with 150+ real-time samples per loaded phase;
three repeats of a 128-request batch took 19 minutes at fe4e0f0, with 85+ samples per
loaded phase; 112 requests should still give 70+ (cut for the suite's 90 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.console import Console

from benchmarks import harness, systems, workloads

console = Console(stderr=True)
QUESTIONS = [
    "What is the capital of France?",
    "Give me one word that rhymes with cat.",
    "Name a colour of the rainbow.",
    "What is two plus two?",
]
MIN_SAMPLES = 60  # per phase; fewer are flagged in the table
BATCH_REQUESTS = 112
RATE = 1.25  # open-loop real-time arrivals per second


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(latencies: list[dict[str, float]]) -> dict[str, Any]:
    seconds = [x["latency_s"] for x in latencies]
    return {
        "count": len(seconds),
        "p50_s": percentile(seconds, 0.5) if seconds else None,
        "p95_s": percentile(seconds, 0.95) if seconds else None,
        "max_s": max(seconds) if seconds else None,
    }


async def one_realtime(
    client: openai.AsyncOpenAI, i: int, t0: float, tier: str | None = None
) -> dict[str, float]:
    """One chat request (in `tier`, e.g. "flex", if given): when it was sent and how long
    its answer took; a flex request refused with 429 is kept, marked `refused`."""
    started = time.perf_counter()
    extra = {} if tier is None else {"service_tier": tier}
    try:
        reply = await client.chat.completions.create(
            model=workloads.MODEL,
            messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=16,
            temperature=0,
            extra_body=extra,
        )
    except openai.RateLimitError:
        if tier != "flex":
            raise
        return {"sent_s": started - t0, "latency_s": time.perf_counter() - started, "refused": 1}
    if reply.choices[0].message.content is None:
        raise RuntimeError("a real-time request came back without content")
    return {"sent_s": started - t0, "latency_s": time.perf_counter() - started}


async def realtime_idle(client: openai.AsyncOpenAI, num: int) -> list[dict[str, float]]:
    t0 = time.perf_counter()
    return [await one_realtime(client, i, t0) for i in range(num)]


async def health(client: openai.AsyncOpenAI) -> dict[str, Any]:
    """GET /health: the worker's in-flight count and how many requests it gave back."""
    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient() as http:
        body: dict[str, Any] = (await http.get(f"{base}/health")).json()
    return body


async def realtime_load(
    client: openai.AsyncOpenAI,
    done: asyncio.Event,
    args: Any,
    rng: random.Random,
    tier: str | None = None,
) -> list[dict[str, float]]:
    """Real-time requests (in `tier`, if given) from the batch's first engine step until
    `done`."""
    while not done.is_set() and (await health(client))["worker"]["in_flight"] == 0:
        await asyncio.sleep(0.05)  # wait until the batch is in the engine
    t0 = time.perf_counter()
    latencies: list[dict[str, float]] = []

    async def record(i: int) -> None:
        latencies.append(await one_realtime(client, i, t0, tier))

    if args.arrival == "open":
        sent: list[asyncio.Task[None]] = []
        i = 0
        while not done.is_set():
            sent.append(asyncio.create_task(record(i)))
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), rng.expovariate(args.rate))
        await asyncio.gather(*sent)
        return latencies

    async def closed_client(offset: int) -> None:
        i = offset
        while not done.is_set():
            await record(i)
            i += args.rt_clients
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), args.rt_interval)

    await asyncio.gather(*(closed_client(k) for k in range(args.rt_clients)))
    return latencies


async def under_load(
    bench: systems.Bench,
    path: Path,
    args: Any,
    repeat: int,
    position: int,
    rng: random.Random,
    tier: str | None = None,
) -> tuple[harness.Sample, list[dict[str, float]], int]:
    """The batch through the API, with real-time requests (in `tier`, if given) for as
    long as it runs."""
    client = bench.client
    done = asyncio.Event()
    given_back_before = (await health(client))["worker"]["given_back_for_realtime"]
    load = asyncio.create_task(realtime_load(client, done, args, rng, tier))
    try:
        sample, _ = await bench.freight_api(path, repeat=repeat, position=position)
    finally:
        done.set()
    latencies = await load
    given_back = (await health(client))["worker"]["given_back_for_realtime"] - given_back_before
    return sample, latencies, given_back


def window_for(policy: str, settings: Any) -> int:
    name, _, size = policy.partition(":")
    if name == "priority":
        return int(settings.max_in_flight)
    return int(size) if size else max(1, settings.engine.max_num_seqs // 4)


async def measure(args: Any, tmp: Path) -> dict[str, Any]:
    size = args.batch_requests or (32 if args.quick else BATCH_REQUESTS)
    num_idle = args.realtime_requests or (8 if args.quick else MIN_SAMPLES)
    path = workloads.write(workloads.mixed(size, max_tokens=64), tmp / "batch.jsonl")
    bench = systems.Bench(tmp, systems.engine_settings(args))
    console.print("starting the engine and warming it up (not timed)...")
    await bench.start()
    settings = bench.settings  # the worker reads these live: the window switches per run
    policies = args.policies.split(",")
    repeats = []
    try:
        await realtime_idle(bench.client, 4)
        for repeat in range(args.repeats):
            rng = random.Random(f"{args.seed}:hybrid:{repeat}")
            await bench.cold()
            idle = await realtime_idle(bench.client, num_idle)
            console.print(f"r{repeat + 1} idle real-time: {latency_summary(idle)}")
            await bench.cold()
            alone, _ = await bench.freight_api(path, repeat=repeat, position=0)
            console.print(f"r{repeat + 1} batch alone: {alone.rate('delivered'):.1f} tok/s")
            sequence = harness.order(policies, args.seed, repeat, key="hybrid")
            idle_p95 = latency_summary(idle)["p95_s"]
            by_policy: dict[str, Any] = {}
            for position, policy in enumerate(sequence, start=1):
                settings.worker.realtime_batch_window = window_for(policy, settings)
                await bench.cold()
                sample, latencies, given_back = await under_load(
                    bench, path, args, repeat, position, rng
                )
                summary = latency_summary(latencies)
                alone_rate = alone.rate("delivered")
                by_policy[policy] = {
                    "realtime_window": settings.realtime_batch_window,
                    "batch": sample.to_dict(),
                    "latencies": latencies,
                    "realtime": summary,
                    "given_back": given_back,
                    "p95_ratio": summary["p95_s"] / idle_p95 if summary["p95_s"] else None,
                    "throughput_ratio": (sample.rate("delivered") or 0) / alone_rate
                    if alone_rate
                    else None,
                }
                console.print(
                    f"r{repeat + 1} {policy}: batch {sample.rate('delivered'):.1f} tok/s, "
                    f"real-time {summary}, {given_back} given back"
                )
            flex = None
            if args.flex:
                await bench.cold()
                flex = await flex_phase(bench, path, args, repeat, rng, alone.rate("delivered"))
            repeats.append(
                {
                    "repeat": repeat,
                    "order": sequence,
                    "idle": {"latencies": idle, "realtime": latency_summary(idle)},
                    "alone": alone.to_dict(),
                    "policies": by_policy,
                    **({"flex": flex} if flex is not None else {}),
                }
            )
    finally:
        await bench.stop()
    return {"batch_requests": size, "repeats": repeats, "summary": summarise(repeats, policies)}


async def flex_phase(
    bench: systems.Bench,
    path: Path,
    args: Any,
    repeat: int,
    rng: random.Random,
    alone_rate: float | None,
) -> dict[str, Any]:
    """The batch again, with the same arrivals sent as flex requests: every latency raw
    (refused ones marked), their distribution, and the batch's throughput beside them."""
    sample, latencies, _ = await under_load(
        bench, path, args, repeat, position=len(args.policies.split(",")) + 1, rng=rng, tier="flex"
    )
    served = [x for x in latencies if not x.get("refused")]
    console.print(
        f"r{repeat + 1} flex: batch {sample.rate('delivered'):.1f} tok/s, "
        f"flex {latency_summary(served)}, {len(latencies) - len(served)} refused"
    )
    return {
        "batch": sample.to_dict(),
        "latencies": latencies,
        "flex": latency_summary(served),
        "num_refused": len(latencies) - len(served),
        "throughput_ratio": (sample.rate("delivered") or 0) / alone_rate if alone_rate else None,
    }


def summarise(repeats: list[dict[str, Any]], policies: list[str]) -> dict[str, Any]:
    """Per policy, over repeats: medians and min-max of p50, p95 and both ratios."""
    out: dict[str, Any] = {
        "idle": {
            "p50_s": harness.spread(r["idle"]["realtime"]["p50_s"] for r in repeats),
            "p95_s": harness.spread(r["idle"]["realtime"]["p95_s"] for r in repeats),
            "count": sum(r["idle"]["realtime"]["count"] for r in repeats),
        },
        "alone": {
            "delivered_tokens_per_s": harness.spread(
                harness.Sample.from_dict(r["alone"]).rate("delivered") for r in repeats
            )
        },
    }
    flex_runs = [r["flex"] for r in repeats if "flex" in r]
    if flex_runs:
        out["flex_tier"] = {
            "p50_s": harness.spread(x["flex"]["p50_s"] for x in flex_runs),
            "p95_s": harness.spread(x["flex"]["p95_s"] for x in flex_runs),
            "count": sum(x["flex"]["count"] for x in flex_runs),
            "num_refused": sum(x["num_refused"] for x in flex_runs),
            "delivered_tokens_per_s": harness.spread(
                harness.Sample.from_dict(x["batch"]).rate("delivered") for x in flex_runs
            ),
            "throughput_ratio": harness.spread(x["throughput_ratio"] for x in flex_runs),
        }
    for policy in policies:
        runs = [r["policies"][policy] for r in repeats]
        out[policy] = {
            "realtime_window": runs[0]["realtime_window"],
            "p50_s": harness.spread(x["realtime"]["p50_s"] for x in runs),
            "p95_s": harness.spread(x["realtime"]["p95_s"] for x in runs),
            "count": sum(x["realtime"]["count"] for x in runs),
            "min_count": min(x["realtime"]["count"] for x in runs),
            "delivered_tokens_per_s": harness.spread(
                harness.Sample.from_dict(x["batch"]).rate("delivered") for x in runs
            ),
            "p95_ratio": harness.spread(x["p95_ratio"] for x in runs),
            "throughput_ratio": harness.spread(x["throughput_ratio"] for x in runs),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "hybrid")
    systems.add_engine_arguments(parser)
    parser.add_argument(
        "--batch-requests", type=int, default=None, help=f"default {BATCH_REQUESTS}"
    )
    parser.add_argument(
        "--realtime-requests", type=int, default=None, help=f"idle phase (default {MIN_SAMPLES})"
    )
    parser.add_argument("--arrival", choices=["open", "closed"], default="open")
    parser.add_argument("--rate", type=float, default=RATE, help="open loop: requests per second")
    parser.add_argument("--rt-clients", type=int, default=1, help="closed loop: clients")
    parser.add_argument(
        "--rt-interval", type=float, default=1.0, help="closed loop: seconds between requests"
    )
    parser.add_argument("--policies", default="priority,window")
    parser.add_argument(
        "--no-flex",
        dest="flex",
        action="store_false",
        help="skip the flex phase (the batch beside service_tier flex requests)",
    )
    args = harness.parse(parser, argv)
    if args.quick:
        args.policies = args.policies.split(",")[-1]
    run = harness.Run("hybrid", args, argv)
    run.engine = systems.recorded_flags(systems.engine_settings(args))
    with harness.scratch("freight-hybrid-") as tmp:
        result = asyncio.run(measure(args, tmp))
        run.write({"settings": harness.settings(args), **result})


if __name__ == "__main__":
    main()
