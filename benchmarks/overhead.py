"""Freight's overhead against raw vLLM, measured side by side in one run.

The same chat requests (the mixed workload: prompts of 5-400 words, max_tokens 64,
temperature 0) go through four systems, in a fresh seeded random order every repeat:
  vllm-offline  vLLM's own offline `LLM.chat`, in a warm subprocess
  engine        every request straight into Freight's warm vLLM AsyncLLM at once,
                without Freight's store or worker: the ceiling for Freight on its engine
  freight       `freight run`'s code path (validation, store, worker, output file)
  api           the HTTP API end to end with the official SDK: upload, create, poll,
                download
Engine start-up is excluded everywhere; both engines ran the same warm-up file, and the
prefix cache of the engine about to run is emptied before every sample, so every system
starts cold. Reported per system: every raw sample, medians and min-max, and the median
of per-repeat ratios of delivered tokens/s to `vllm-offline` and to `engine`.

    python -m benchmarks.overhead [--requests 64] [--repeats 3] [--quick] [--name overhead]
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import harness, systems, workloads

console = Console(stderr=True)
SYSTEMS = ("vllm-offline", "engine", "freight", "api")
REQUESTS = 64
QUICK_REQUESTS = 16


async def measure(
    bench: systems.Bench, system: str, path: Path, repeat: int, position: int
) -> tuple[harness.Sample, dict[str, str] | None]:
    await bench.cold()
    if system == "engine":
        return await bench.engine_direct(path, repeat=repeat, position=position), None
    if system == "vllm-offline":
        sample, delivered = await bench.baseline(
            "vllm-offline", path, repeat=repeat, position=position
        )
    elif system == "freight":
        sample, delivered = await bench.freight_run(path, repeat=repeat, position=position)
    else:
        sample, delivered = await bench.freight_api(path, repeat=repeat, position=position)
    return sample, delivered.texts


async def measure_all(args: Any, tmp: Path) -> dict[str, Any]:
    bench = systems.Bench(tmp, systems.engine_settings(args))
    console.print("starting Freight's engine and vLLM's offline one, warming both (not timed)...")
    await bench.start()
    await bench.start_offline()
    size = args.requests or (QUICK_REQUESTS if args.quick else REQUESTS)
    path = workloads.write(workloads.mixed(size), tmp / "mixed.jsonl")
    samples: list[harness.Sample] = []
    texts: dict[tuple[int, str], dict[str, str]] = {}
    orders = []
    try:
        for repeat in range(args.repeats):
            sequence = harness.order(SYSTEMS, args.seed, repeat, key="overhead")
            orders.append(sequence)
            for position, system in enumerate(sequence):
                sample, found = await measure(bench, system, path, repeat, position)
                samples.append(sample)
                if found is not None:
                    texts[(repeat, system)] = found
                console.print(
                    f"r{repeat + 1} {system:13s} {sample.seconds:7.2f} s "
                    f"{sample.rate('delivered') or 0:7.1f} tok/s delivered"
                )
    finally:
        await bench.stop()
    agreement: dict[str, list[dict[str, int]]] = {}
    for repeat in range(args.repeats):
        for system in ("freight", "api"):
            if (repeat, system) in texts and (repeat, "vllm-offline") in texts:
                result = harness.agreement(texts[(repeat, system)], texts[(repeat, "vllm-offline")])
                agreement.setdefault(system, []).append({"repeat": repeat, **result})
    return {
        "workload": "mixed",
        "requests": size,
        "orders": orders,
        "samples": [s.to_dict() for s in samples],
        "summary": harness.summarise(samples, baselines=("vllm-offline", "engine")),
        "agreement_with_vllm_offline": agreement,
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "overhead")
    systems.add_engine_arguments(parser)
    parser.add_argument("--requests", type=int, default=None, help=f"default {REQUESTS}")
    args = harness.parse(parser, argv)
    run = harness.Run("overhead", args, argv)
    run.engine = systems.recorded_flags(systems.engine_settings(args))
    with harness.scratch("freight-overhead-") as tmp:
        result = asyncio.run(measure_all(args, tmp))
        run.write({"settings": harness.settings(args), **result})


if __name__ == "__main__":
    main()
