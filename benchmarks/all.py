"""Every benchmark, one after another, then BENCHMARKS.md rendered from what they wrote.

    python -m benchmarks.all            # the full suite: every table, 3 repeats
    python -m benchmarks.all --quick    # every benchmark in small form (smoke run),
                                        # into benchmarks/results/quick/ by default
    python -m benchmarks.all --only peers,hybrid      # or --skip ...

Each benchmark runs as its own process (its own results file and environment block;
each waits for the load average left by the one before to settle, see harness.py),
and a failed one does not stop the others: the exit code says whether all succeeded.
What ran, and for how long, goes to RESULTS_DIR/all.json (the page's `suite` table).

The budget, in minutes on the 2-core development machine when idle, eager engines:
"Xeon" is what each step took in the full run at commit a524108 (78 minutes in all, an
Intel Xeon), "EPYC" the full run at 2e52574 (117 minutes, an AMD EPYC with bf16
instructions: over the 90-minute budget), "cut" the full run at fe4e0f0 on the same
kind of EPYC with the smaller sizes below (93 minutes: still over, by less; all.json
records what each step really takes and the page's suite table shows it). The quick run
at e606b42 took 9 minutes (quick profiles nothing, cuts the long-tail essays to 128
tokens and runs the 100-line wall file only):

    step                    Xeon    EPYC    cut    what dominates (cut)
    control_plane            5.5     5.8    5.5    1,000,000 lines through `freight run`
    embeddings (2 dtypes)    4.8     4.6    4.1    one text per request, 800 texts x 3
    upstream                 0.9     0.6    0.5
    scale                    0.5     1.3    1.4    process starts, 3 worker counts x 3
    step_cost                5.0     6.8    6.4    4 batch sizes x 64 steps x 3
    overhead                 8.9    12.1   10.1    4 systems x 3 repeats, 64 requests
    peers (steady + wall)   39.6    50.3   41.8    wall view: 12 engine starts; steady:
                                                   64/100/64/96 lines x 4 systems x 3
    peers-fp32 (agreement)   4.1     4.2    3.9    two float32 engine starts
    hybrid                   8.3    30.8   19.1    3 repeats x 4 runs of a 128-request
                                                   batch (alone, 2 policies, flex)
    total                   78     117     93

The hybrid comparison ran once in the Xeon run (a 512-request batch at 0.5 real-time
arrivals a second); in the EPYC run 3 repeats of a 256-request batch at 1.25 arrivals a
second (150+ real-time samples per loaded phase and repeat); now 3 repeats of a
128-request batch at the same rate (85+ samples per loaded phase and repeat in the
cut run; its loaded phases did not shrink in proportion to the batch). The steady
workloads were 96/150/96/96 lines and the overhead file 96 requests in both earlier
runs. Cut again after the 93-minute run, to bring the suite under 90 minutes with some
room (about 5 minutes less, estimated from that run's samples): hybrid's batch 112
requests, shared-prefix 80 lines, the wall view's large file 400 lines, 600 embedding
texts, and the py-spy profile only for workloads where Freight's median is below
run-batch's (what the profile is for; it was an extra `freight run` on all four).
The tables benchmark (issue 20: 1,000,000 rows through `freight run` on a table, its
memory and a resume, ~19 minutes) and the cache benchmark (issue 22, ~4 minutes) are
not steps of the suite, which would take longer still with them:
`python -m benchmarks.tables` and `python -m benchmarks.cache` run them alone
(`--only tables` is refused as not a step of the suite).

Three wall-time files are cut to fit: the 1-line file (start-up alone, which the
100-line file shows too) is left out; the 1,000-line file took 15.5 minutes of the
EPYC run, so the suite's large file has 400 lines (`python -m benchmarks.peers --view
wall --wall-sizes 1,1000 --name peers-wall-1-1000` runs those two alone); and the
10,000-line file is not in the full suite: for three systems one repeat alone took 43
minutes on the EPYC that measured it (each spends about 14 minutes on 10,000 prompts),
so `--with-10000` adds it, three repeats (about 2 h 10 min), as `peers-wall-10000`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import harness, report

Step = tuple[str, list[str]]
FULL: list[Step] = [
    ("control_plane", []),
    ("embeddings", []),
    ("embeddings", ["--dtype", "bfloat16", "--name", "embeddings-bf16"]),
    ("upstream", []),
    ("scale", []),
    ("step_cost", []),
    ("overhead", []),
    ("peers", ["--profile"]),
    (
        "peers",
        "--view steady --dtype float32 --workloads mixed --size 32 "
        "--systems run-batch,freight --repeats 1 --name peers-fp32".split(),
    ),
    ("hybrid", []),
]
TEN_THOUSAND: Step = (
    "peers",
    "--view wall --wall-sizes 10000 --large-repeats 3 --name peers-wall-10000".split(),
)


def steps(args: argparse.Namespace) -> list[Step]:
    chosen = [*FULL, TEN_THOUSAND] if args.with_10000 else list(FULL)
    if args.quick:  # the agreement check needs float32 engines: not a smoke-run item
        chosen = [(m, a) for m, a in chosen if "peers-fp32" not in a and TEN_THOUSAND[1] != a]
    if args.only:
        chosen = [s for s in chosen if s[0] in args.only or _name(s) in args.only]
    return [s for s in chosen if s[0] not in args.skip and _name(s) not in args.skip]


def _name(step: Step) -> str:
    module, extra = step
    return extra[extra.index("--name") + 1] if "--name" in extra else module


def run_step(step: Step, args: argparse.Namespace) -> dict[str, Any]:
    module, extra = step
    argv = [*extra, "--results-dir", str(args.results_dir)]
    if args.quick:
        argv += ["--quick", "--settle-s", "0"]
    elif args.settle_s is not None:
        argv += ["--settle-s", str(args.settle_s)]
    command = [sys.executable, "-m", f"benchmarks.{module}", *argv]
    print(f"\n=== {harness.command_line(f'benchmarks.{module}', argv)}", file=sys.stderr)
    started = time.monotonic()
    code = subprocess.run(command, cwd=harness.REPO).returncode
    seconds = time.monotonic() - started
    print(f"=== {module} exited {code} after {seconds / 60:.1f} min", file=sys.stderr)
    return {
        "command": harness.command_line(f"benchmarks.{module}", argv),
        "name": _name(step),
        "seconds": round(seconds, 1),
        "returncode": code,
    }


def parser() -> argparse.ArgumentParser:
    parser = harness.arguments(__doc__, "all", repeats=1)
    parser.add_argument("--only", type=lambda s: s.split(","), default=[])
    parser.add_argument("--skip", type=lambda s: s.split(","), default=[])
    parser.add_argument(
        "--with-10000", action="store_true", help="add the 10,000-line wall file (~45 min)"
    )
    parser.set_defaults(settle_s=None)  # each benchmark's own default, unless given
    return parser


QUICK_RESULTS = harness.RESULTS / "quick"  # where --quick writes unless told otherwise


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The suite's arguments; a smoke run (--quick) writes to QUICK_RESULTS by default,
    so it never replaces the full run's files (and their page) with smaller ones."""
    args = harness.parse(parser(), argv)
    if args.quick and Path(args.results_dir) == harness.RESULTS:
        args.results_dir = QUICK_RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settle_s = args.settle_s
    args.settle_s = 0  # each benchmark settles for itself
    run = harness.Run("all", args, argv)
    args.settle_s = settle_s
    started = time.monotonic()
    done = [run_step(step, args) for step in steps(args)]
    run.write({"steps": done, "seconds": round(time.monotonic() - started, 1)})
    page = harness.REPO / "BENCHMARKS.md"
    output = page if Path(args.results_dir) == harness.RESULTS else args.results_dir / page.name
    report.main(
        ["--results-dir", str(args.results_dir), "--page", str(page), "--output", str(output)]
    )
    print(f"rendered {output}", file=sys.stderr)
    return 0 if all(step["returncode"] == 0 for step in done) else 1


if __name__ == "__main__":
    sys.exit(main())
