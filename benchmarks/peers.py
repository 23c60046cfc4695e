"""Freight against vLLM's run-batch on the same files, model, flags and machine: two views.

Steady throughput (`--view steady`; start-up excluded on every side, benchmarks/systems.py):
  run-batch   vLLM's own `run_batch()` in a warm subprocess, our clock around it
  freight     `freight run`'s code path on Freight's warm engine
  api         Freight's HTTP API end to end with the official SDK
  single      one request at a time through Freight's engine (the first --single-limit
              requests: it is a rate, so a subset measures it)
  `--ablate` adds `freight run` with each scheduling optimisation off in turn.
  Workloads (benchmarks/workloads.py, seeded): mixed, shared-prefix, duplicates, long-tail.

Wall time as the user waits (`--view wall`; start-up included, benchmarks/processes.py):
  run-batch      `python -m vllm.entrypoints.openai.run_batch -i IN -o OUT ...` as a process
  freight-run    `freight run IN -o OUT` as a process
  freight-serve  IN submitted with the official SDK to an already running `freight serve`
  on `short` files of 100 and 400 lines (a fresh file per repeat); add 1 (start-up
  alone), 1,000 or 10,000 with `--wall-sizes 1,100,1000,10000` (1,000 lines take about
  15 minutes for three repeats here, 10,000 about 2 h 10 min for three; files above
  1,000 lines run `--large-repeats` times: as many as the others unless told, 1 to fit
  a smaller budget).

Every repeat runs the systems in a fresh seeded random order; every raw sample is
stored (seconds, requests, prompt tokens, output tokens delivered in result lines and
computed by the engine, peak RSS of the process tree, time to the first result line).
Ratios are medians of per-repeat ratios: delivered tokens/s in the steady view, wall
seconds in the wall view. Result texts are compared with run-batch's, custom_id by
custom_id (in float32 greedy runs none should differ). `--profile` records a py-spy
profile of Freight's process during one extra, untimed `freight run` of each workload
where Freight's median is below run-batch's.
`--quick` (a smoke run): 8 lines per steady workload, long-tail essays of 128 tokens, no
profile, and the 100-line wall file only.

    python -m benchmarks.peers [--view both|steady|wall] [--quick] [--repeats 3]
        [--ablate] [--profile] [--dtype float32] [--compiled] [--name peers]
Writes RESULTS_DIR/NAME.json (and NAME.png, NAME-profile-WORKLOAD.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import harness, processes, profiling, systems, workloads

console = Console(stderr=True)
SIZES = {"mixed": 64, "shared-prefix": 80, "duplicates": 64, "long-tail": 96}
QUICK_SIZE = 8
QUICK_LONG_TOKENS = 128  # --quick: the long-tail essays' max_tokens (full: 512)
SYSTEMS = ("run-batch", "freight", "api", "single")
ABLATIONS = {
    "freight (no dedup)": {"deduplicate": False},
    "freight (no prefix grouping)": {"prefix_grouping": False},
    "freight (no length-aware)": {"length_aware": False},
}
WALL_SYSTEMS = ("run-batch", "freight-run", "freight-serve")
WALL_SIZES = "100,400"
QUICK_WALL_SIZES = "100"
LARGE_LINES = workloads.LARGE_LINES
Measured = systems.Measured


def log_sample(label: str, sample: harness.Sample) -> None:
    rate = sample.rate("delivered") or 0.0
    console.print(
        f"{label:22s} r{sample.repeat + 1} #{sample.position + 1} {sample.system:28s} "
        f"{sample.seconds:8.2f} s {rate:8.1f} tok/s delivered "
        f"({sample.output_tokens_delivered} delivered, {sample.output_tokens_computed} computed, "
        f"{sample.num_requests} lines, rss {sample.peak_rss_mb} MB)"
    )


def agreements(
    texts: dict[tuple[int, str], dict[str, str]], reference: str = "run-batch"
) -> dict[str, Any]:
    """Per system: result texts against the reference's, per repeat and in total."""
    out: dict[str, Any] = {}
    for (repeat, system), mine in sorted(texts.items()):
        if system == reference or (repeat, reference) not in texts:
            continue
        entry = out.setdefault(system, {"per_repeat": [], "compared": 0, "differ": 0})
        result = harness.agreement(mine, texts[(repeat, reference)])
        entry["per_repeat"].append({"repeat": repeat, **result})
        entry["compared"] += result["compared"]
        entry["differ"] += result["differ"]
    return out


# --- steady throughput ---------------------------------------------------------------


async def measure(
    bench: systems.Bench, system: str, path: Path, repeat: int, position: int, single_limit: int
) -> tuple[harness.Sample, dict[str, str] | None]:
    await bench.cold()
    if system == "run-batch":
        sample, delivered = await bench.baseline(
            "run-batch", path, repeat=repeat, position=position
        )
    elif system == "freight":
        sample, delivered = await bench.freight_run(path, repeat=repeat, position=position)
    elif system == "api":
        sample, delivered = await bench.freight_api(path, repeat=repeat, position=position)
    elif system == "single":
        single = await bench.engine_direct(
            path,
            one_at_a_time=True,
            limit=single_limit,
            system="single",
            repeat=repeat,
            position=position,
        )
        return single, None
    else:
        sample, delivered = await bench.freight_run(
            path, system=system, scheduler=ABLATIONS[system], repeat=repeat, position=position
        )
    return sample, delivered.texts


async def steady(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    bench = systems.Bench(tmp / "steady", systems.engine_settings(args))
    bench.tmp.mkdir()
    console.print("starting Freight's engine and run-batch's, warming both (not timed)...")
    await bench.start()
    await bench.start_run_batch()
    names = list(args.systems) + (list(ABLATIONS) if args.ablate else [])
    results: dict[str, Any] = {}
    try:
        for workload in args.workloads:
            size = args.size or (QUICK_SIZE if args.quick else SIZES[workload])
            lines = (
                workloads.long_tail(size, long_tokens=QUICK_LONG_TOKENS)
                if args.quick and workload == "long-tail"
                else workloads.WORKLOADS[workload](size)
            )
            path = workloads.write(lines, bench.tmp / f"{workload}.jsonl")
            samples: list[harness.Sample] = []
            texts: dict[tuple[int, str], dict[str, str]] = {}
            orders = []
            for repeat in range(args.repeats):
                sequence = harness.order(names, args.seed, repeat, key=workload)
                orders.append(sequence)
                for position, system in enumerate(sequence):
                    sample, found = await measure(
                        bench, system, path, repeat, position, args.single_limit
                    )
                    samples.append(sample)
                    if found is not None:
                        texts[(repeat, system)] = found
                    log_sample(workload, sample)
            results[workload] = {
                "size": size,
                "orders": orders,
                "samples": [s.to_dict() for s in samples],
                "summary": harness.summarise(samples, baselines=("run-batch", "single")),
                "agreement": agreements(texts),
            }
            if args.profile and not args.quick and below_run_batch(results[workload]):
                results[workload]["profile"] = await profiled_run(bench, path, args, workload)
            else:  # a smoke run profiles nothing; nor does a workload Freight leads
                profile_path(args, workload).unlink(missing_ok=True)
    finally:
        await bench.stop()
    return {
        "workloads": results,
        "run_batch_flags": systems.vllm_flags(bench.engine_config, bench.weights),
    }


def below_run_batch(result: dict[str, Any]) -> bool:
    """Whether Freight's median ratio to run-batch on a workload is below 1.0 (what the
    profile is for: where Freight's time goes where it is slower)."""
    ratio = result["summary"].get("freight", {}).get("ratios", {}).get("x_run-batch")
    return ratio is not None and ratio["median"] < 1.0


def profile_path(args: argparse.Namespace, workload: str) -> Path:
    return Path(args.results_dir) / f"{args.name}-profile-{workload}.txt"


async def profiled_run(
    bench: systems.Bench, path: Path, args: argparse.Namespace, workload: str
) -> dict[str, Any]:
    """One extra `freight run` of the file under py-spy; not among the timed samples."""
    out = profile_path(args, workload)
    out.parent.mkdir(parents=True, exist_ok=True)
    await bench.cold()
    with profiling.record(os.getpid(), out):
        sample, _ = await bench.freight_run(path, repeat=-1, position=0, system="freight")
    log_sample(f"{workload} (profiled)", sample)
    return {**profiling.summarise(out), "seconds_under_profiler": sample.seconds}


# --- wall time as the user waits -----------------------------------------------------


def wall_sizes(spec: str, large_repeats: int, repeats: int) -> list[tuple[int, int]]:
    """(lines, repeats) per file size: above LARGE_LINES lines, `large_repeats`."""
    sizes = [int(x) for x in spec.split(",") if x]
    return [(n, large_repeats if n > LARGE_LINES else repeats) for n in sizes]


def wall(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    engine = systems.engine_settings(args)
    here = tmp / "wall"
    here.mkdir()
    weights = systems.model_dir(engine)
    warm = workloads.write(workloads.mixed(32, seed=99), here / "warm.jsonl")
    commands = processes.Commands(here, engine, weights)
    serve = processes.Serve(here, engine, warm)
    spec = args.wall_sizes or (QUICK_WALL_SIZES if args.quick else WALL_SIZES)
    results: dict[str, Any] = {}
    console.print("starting `freight serve` and warming it (not timed)...")
    with serve.running():
        for size, repeats in wall_sizes(spec, args.large_repeats, args.repeats):
            samples: list[harness.Sample] = []
            texts: dict[tuple[int, str], dict[str, str]] = {}
            orders = []
            for repeat in range(repeats):
                path = workloads.write(
                    workloads.short(size, seed=1000 * (repeat + 1) + size),
                    here / f"short-{size}-r{repeat}.jsonl",
                )
                sequence = harness.order(WALL_SYSTEMS, args.seed, repeat, key=f"wall-{size}")
                orders.append(sequence)
                for position, system in enumerate(sequence):
                    if system == "freight-serve":
                        sample, found = serve.measure(path, repeat=repeat, position=position)
                    else:
                        sample, found = commands.measure(
                            system, path, repeat=repeat, position=position
                        )
                    samples.append(sample)
                    texts[(repeat, system)] = found.texts
                    log_sample(f"wall {size} lines", sample)
            results[str(size)] = {
                "lines": size,
                "repeats": repeats,
                "orders": orders,
                "samples": [s.to_dict() for s in samples],
                "summary": harness.summarise(
                    samples, baselines=("run-batch",), ratio_metric="time"
                ),
                "agreement": agreements(texts),
            }
    return {
        "workload": "short",
        "sizes": results,
        "commands": {
            "run-batch": shlex.join(commands.argv("run-batch", Path("IN"), Path("OUT"))),
            "freight-run": shlex.join(commands.argv("freight-run", Path("IN"), Path("OUT"))),
        },
        "freight_toml": processes.freight_toml(engine),
    }


# --- the chart -----------------------------------------------------------------------


def chart(workloads_result: dict[str, Any], path: Path, title: str) -> None:
    """Delivered tokens/s per system and workload: medians, with min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(workloads_result)
    systems_shown = list(next(iter(workloads_result.values()))["summary"])
    width = 0.8 / len(systems_shown)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, system in enumerate(systems_shown):
        stats = [workloads_result[n]["summary"][system]["delivered_tokens_per_s"] for n in names]
        medians = [s["median"] for s in stats]
        errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        xs = [x + i * width for x in range(len(names))]
        ax.bar(xs, medians, width, yerr=errors, capsize=2, label=system)
    ax.set_xticks([x + width * (len(systems_shown) - 1) / 2 for x in range(len(names))], names)
    ax.set_ylabel("delivered output tokens/s (median, min-max)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "peers")
    systems.add_engine_arguments(parser)
    parser.add_argument("--view", choices=["both", "steady", "wall"], default="both")
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(SIZES))
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--size", type=int, default=None, help="every steady workload's lines")
    parser.add_argument("--single-limit", type=int, default=4)
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy profile per workload")
    parser.add_argument(
        "--wall-sizes", default=None, help=f"lines per wall file (default {WALL_SIZES})"
    )
    parser.add_argument(
        "--large-repeats",
        type=int,
        default=None,
        help=f"repeats for wall files above {LARGE_LINES} lines (default: --repeats; "
        "1 to fit a smaller budget)",
    )
    args = harness.parse(parser, argv)
    if args.quick:
        args.single_limit = min(args.single_limit, 2)
        args.large_repeats = 1
    if args.large_repeats is None:
        args.large_repeats = args.repeats
    run = harness.Run("peers", args, argv)
    run.engine = systems.recorded_flags(systems.engine_settings(args))
    with harness.scratch("freight-peers-") as tmp:
        result: dict[str, Any] = {"settings": harness.settings(args)}
        if args.view in ("both", "steady"):
            result["steady"] = asyncio.run(steady(args, tmp))
            chart(
                result["steady"]["workloads"],
                Path(args.results_dir) / f"{args.name}.png",
                f"Steady throughput, {harness.cpu_model()}, {args.dtype}"
                + (" (quick)" if args.quick else ""),
            )
        if args.view in ("both", "wall"):
            result["wall"] = wall(args, tmp)
        run.write(result)


if __name__ == "__main__":
    main()
