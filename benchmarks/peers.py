"""Freight against its peers on the same files, same model, same machine, in one run.

Systems (engine start-up excluded for all, see harness.py):
  run-batch   vLLM's own run-batch (`vllm.entrypoints.openai.run_batch`'s code)
  freight     `freight run`'s code path
  api         Freight's HTTP API end to end with the official SDK
  single      one request at a time through the same engine (on the first
              --single-limit requests; it is a rate, so a subset measures it)
Workloads (benchmarks/workloads.py, seeded): mixed, shared-prefix, duplicates, long-tail.
Systems are interleaved within each repeat; medians and min-max are reported, with each
system's ratio to run-batch and to one-at-a-time. `--ablate` adds `freight run` with each
scheduling optimisation switched off in turn.

    .venv/bin/python -m benchmarks.peers [--repeats 3] [--ablate]
Writes benchmarks/results/peers.json and peers.png (`--name` changes the stem).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import workloads
from benchmarks.harness import REPO, Bench, Sample, machine

console = Console(stderr=True)
RESULTS = REPO / "benchmarks" / "results"
SIZES = {"mixed": 256, "shared-prefix": 1000, "duplicates": 500, "long-tail": 500}
SYSTEMS = ("run-batch", "freight", "api", "single")
ABLATIONS = {
    "freight (no dedup)": {"deduplicate": False},
    "freight (no prefix grouping)": {"prefix_grouping": False},
    "freight (no length-aware)": {"length_aware": False},
}


async def measure(bench: Bench, system: str, path: Path, single_limit: int) -> Sample:
    await bench.cold()
    if system == "run-batch":
        return await asyncio.to_thread(bench.vllm_run_batch, path)
    if system == "freight":
        return await bench.freight_run(path)
    if system == "api":
        return await bench.freight_api(path)
    if system == "single":
        return await bench.engine_direct(path, one_at_a_time=True, limit=single_limit)
    return await bench.freight_run(path, scheduler=ABLATIONS[system])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(Path(tempfile.mkdtemp(prefix="freight-peers-")))
    console.print("starting and warming Freight's engine (excluded from timings)...")
    await bench.start()
    systems = list(SYSTEMS) + (list(ABLATIONS) if args.ablate else [])
    samples: dict[str, dict[str, list[Sample]]] = {}
    try:
        for name in args.workloads:
            size = args.size or SIZES[name]
            path = workloads.write(workloads.WORKLOADS[name](size), bench.tmp / f"{name}.jsonl")
            samples[name] = {system: [] for system in systems}
            for repeat in range(args.repeats):
                for system in systems:
                    sample = await measure(bench, system, path, args.single_limit)
                    samples[name][system].append(sample)
                    req_rate = sample.num_requests / sample.seconds
                    console.print(
                        f"{name:13s} round {repeat + 1} {system:28s} "
                        f"{sample.tokens_per_s:8.1f} tok/s {req_rate:7.1f} req/s "
                        f"({sample.output_tokens} tokens, {sample.seconds:.2f} s)"
                    )
    finally:
        await bench.stop()
    return report(samples, args)


def report(samples: dict[str, dict[str, list[Sample]]], args: argparse.Namespace) -> dict:
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python -m benchmarks.peers " + " ".join(sys.argv[1:]),
        "workloads": {},
    }
    print(
        "| workload | system | generated tok/s, median (min-max) | req/s | x run-batch | "
        "x one-at-a-time |"
    )
    print("|---|---|---|---|---|---|")
    for name, by_system in samples.items():
        medians = {s: statistics.median(x.tokens_per_s for x in v) for s, v in by_system.items()}
        entry = {}
        for system, runs in by_system.items():
            rates = [x.tokens_per_s for x in runs]
            req_rate = statistics.median(x.num_requests / x.seconds for x in runs)
            entry[system] = {
                "tokens_per_s": rates,
                "median": medians[system],
                "requests_per_s": req_rate,
                "x_run_batch": medians[system] / medians["run-batch"],
                "x_single": medians[system] / medians["single"],
            }
            print(
                f"| {name} | {system} | {medians[system]:.1f} ({min(rates):.1f}-"
                f"{max(rates):.1f}) | {req_rate:.1f} | {entry[system]['x_run_batch']:.2f} | "
                f"{entry[system]['x_single']:.1f} |"
            )
        result["workloads"][name] = entry
    chart(result, RESULTS / f"{args.name}.png")
    return result


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["workloads"])
    systems = list(next(iter(result["workloads"].values())))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, system in enumerate(systems):
        values = [result["workloads"][n][system]["median"] for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=system)
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(names))], names)
    ax.set_ylabel("generated tokens/s (median)")
    ax.set_title(f"Batch throughput, {result['machine']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(SIZES))
    parser.add_argument("--size", type=int, default=None, help="override every workload size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-limit", type=int, default=24)
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--name", default="peers", help="results file stem")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{arguments.name}.json").write_text(json.dumps(outcome, indent=1))
