"""Freight's overhead against raw vLLM, measured side by side in one run.

The same chat requests (256 by default: mixed prompt lengths, max_tokens 64, temperature
0) go through four paths, interleaved and repeated:
  vllm     vLLM's own offline `LLM.chat` (subprocess)
  engine   every request straight into Freight's warm vLLM AsyncLLM at once, without
           Freight's store or worker: the ceiling for Freight on the same engine
  run      `freight run`'s code path (validation, store, worker, output file)
  api      the HTTP API end to end with the official SDK: upload, create, poll, download
Engine start-up is excluded everywhere. Reported: generated tokens/s per path (median,
min-max) and ratios to `vllm` and to `engine`; JSON in benchmarks/results/overhead.json.

    .venv/bin/python -m benchmarks.overhead [--requests 256] [--repeats 3]
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
PATHS = {
    "vllm": "vLLM `LLM.chat` (offline)",
    "engine": "vLLM AsyncLLM, all requests at once",
    "run": "`freight run`",
    "api": "Freight API end to end (SDK)",
}


async def measure(bench: Bench, name: str, input_path: Path) -> Sample:
    await bench.cold()
    if name == "vllm":
        return await asyncio.to_thread(bench.vllm_offline, input_path)
    if name == "engine":
        return await bench.engine_direct(input_path)
    if name == "run":
        return await bench.freight_run(input_path)
    return await bench.freight_api(input_path)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(Path(tempfile.mkdtemp(prefix="freight-overhead-")))
    console.print("starting and warming Freight's engine (excluded from timings)...")
    await bench.start()
    input_path = workloads.write(workloads.mixed(args.requests), bench.tmp / "mixed.jsonl")
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    try:
        for repeat in range(args.repeats):
            for name in PATHS:
                sample = await measure(bench, name, input_path)
                rates[name].append(sample.tokens_per_s)
                console.print(
                    f"round {repeat + 1} {name:6s} {sample.tokens_per_s:7.1f} tok/s "
                    f"({sample.output_tokens} tokens, {sample.seconds:.2f} s)"
                )
    finally:
        await bench.stop()
    median = {k: statistics.median(v) for k, v in rates.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python -m benchmarks.overhead " + " ".join(sys.argv[1:]),
        "requests": args.requests,
        "repeats": args.repeats,
        "tokens_per_s": {
            k: {"median": median[k], "min": min(v), "max": max(v), "all": v}
            for k, v in rates.items()
        },
    }
    print("| path | generated tok/s, median | min-max | x vLLM offline | x AsyncLLM direct |")
    print("|---|---|---|---|---|")
    for name, label in PATHS.items():
        print(
            f"| {label} | {median[name]:.1f} | {min(rates[name]):.1f}-{max(rates[name]):.1f}"
            f" | {median[name] / median['vllm']:.2f} | {median[name] / median['engine']:.2f} |"
        )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    result = asyncio.run(main(parser.parse_args()))
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "overhead.json").write_text(json.dumps(result, indent=1))
