"""`freight run` on a 1,000,000-row table: flat memory, and `--resume` that runs no row twice.

  memory  a generated (seeded) Parquet table of reviews (id, product, review) through
          `freight run TABLE --prompt ... --id-column id -o out.parquet`, a subprocess on
          the zero-cost echo engine. The process tree's resident memory is sampled every
          0.25 s beside the size of the output file; the output's row groups (one per
          chunk of rows, written as the chunk ends) turn each size into the rows written
          by then. Reported: peak RSS, RSS as 10%, 20%, ..., 90% of the rows were
          written, and the largest over the smallest RSS from 10% to 90% of the rows.
  resume  the same table into a fresh JSONL output, SIGKILLed as soon as half of its
          rows are written, then `freight run ... --resume` to the end. No finished row
          ran twice when the rows the killed run wrote plus the rows the resumed run ran
          (its closing line counts them) make exactly the table, and the output equals
          the clean run's, row for row.

    python -m benchmarks.tables [--rows 1000000] [--quick] [--name tables]

Targets (issue 20): peak RSS <= 500 MB, flat from 10% to 90% of the rows (largest /
smallest <= 1.25 x); resume after a kill at about half way runs no finished row again.
--quick: 100,000 rows.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import harness
from benchmarks.control_plane import ECHO_TOML, freight_env
from benchmarks.workloads import WORDS

ROWS = 1_000_000
QUICK_ROWS = 100_000
WRITE_ROWS = 100_000  # rows per row group of the generated table
PROMPT = "Is this review of a {{ product }} positive, negative or neutral?\n\n{{ review }}"
PRODUCTS = (
    "Wireless earbuds",
    "Mechanical keyboard",
    "Coffee maker",
    "Water bottle",
    "Desk lamp",
    "Tent",
    "Printer",
    "Backpack",
)
SAMPLE_EVERY_S = 0.25
PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
Sample = tuple[float, float, int]  # seconds since the start, tree RSS in MB, rows written


def write_table(path: Path, num_rows: int, seed: int) -> Path:
    """`num_rows` reviews of 8-40 words with ids 1..num_rows, the same for the same seed."""
    rng = random.Random(seed)
    schema = pa.schema([("id", pa.int64()), ("product", pa.string()), ("review", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, num_rows, WRITE_ROWS):
            ids = range(start + 1, min(start + WRITE_ROWS, num_rows) + 1)
            columns = {
                "id": pa.array(ids, pa.int64()),
                "product": [rng.choice(PRODUCTS) for _ in ids],
                "review": [" ".join(rng.choices(WORDS, k=rng.randint(8, 40))) for _ in ids],
            }
            writer.write_table(pa.table(columns, schema=schema))
    return path


def command(table: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "freight.cli.main",
        "run",
        str(table),
        "--prompt",
        PROMPT,
        "--model",
        "echo",
        "--id-column",
        "id",
        "-o",
        str(output),
        *extra,
    ]


def start(argv: list[str], env: dict[str, str], log: IO[str]) -> subprocess.Popen[str]:
    """`freight run` in its own process group (a SIGKILL reaches all of it)."""
    return subprocess.Popen(
        argv,
        env={**env, "COLUMNS": "400"},  # its closing line on one line, for resumed_counts
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        start_new_session=True,
    )


def check_exit(proc: subprocess.Popen[str], log: Path, allowed: Sequence[int] = (0,)) -> None:
    if proc.returncode not in allowed:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"freight run exited {proc.returncode}:\n{tail}")


# --- memory ----------------------------------------------------------------------------


def row_group_ends(path: Path) -> list[tuple[int, int]]:
    """Per row group of a Parquet file, in file order: the byte its data ends at, and the
    rows in it and every group before it."""
    metadata = pq.ParquetFile(path).metadata
    ends: list[tuple[int, int]] = []
    num_rows = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        end = 0
        for j in range(group.num_columns):
            column = group.column(j)
            first = min(o for o in (column.dictionary_page_offset, column.data_page_offset) if o)
            end = max(end, first + column.total_compressed_size)
        num_rows += group.num_rows
        ends.append((end, num_rows))
    return ends


def rows_at(size: int, ends: Sequence[tuple[int, int]]) -> int:
    """How many rows were whole in the output once it held `size` bytes."""
    done = 0
    for end, num_rows in ends:
        if end > size:
            break
        done = num_rows
    return done


def memory_profile(samples: Sequence[Sample], num_rows: int) -> dict[str, Any]:
    """Peak RSS; RSS at the first sample by which 10%, 20%, ..., 90% of the rows were
    written; and the largest over the smallest RSS of the samples from 10% to 90%."""
    measured = [s for s in samples if s[1] > 0]  # 0: the process had just exited
    at: dict[str, float | None] = {}
    for percent in PERCENTS:
        reached = next((s for s in measured if s[2] * 100 >= percent * num_rows), None)
        at[str(percent)] = None if reached is None else reached[1]
    window = [s[1] for s in measured if 10 * num_rows <= s[2] * 100 <= 90 * num_rows]
    return {
        "peak_rss_mb": max((s[1] for s in measured), default=None),
        "rss_mb_at_percent_of_rows": at,
        "window_samples": len(window),
        "window_rss_mb_min": min(window, default=None),
        "window_rss_mb_max": max(window, default=None),
        "flat_ratio": round(max(window) / min(window), 3) if window else None,
    }


def measure_memory(
    tmp: Path, table: Path, num_rows: int, env: dict[str, str]
) -> tuple[dict[str, Any], Path]:
    """The memory run: its figures, and its output (the clean run to compare with)."""
    output = tmp / "memory-out.parquet"
    log_path = tmp / "memory.log"
    load1 = harness.load1()
    raw: list[tuple[float, float, int]] = []  # seconds, RSS in MB, output bytes
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = start(command(table, output), env, log)
        while proc.poll() is None:
            rss = harness.tree_rss_bytes(proc.pid)
            size = output.stat().st_size if output.exists() else 0
            raw.append((round(time.perf_counter() - started, 2), round(rss / 2**20, 1), size))
            time.sleep(SAMPLE_EVERY_S)
        seconds = time.perf_counter() - started
    check_exit(proc, log_path)
    ends = row_group_ends(output)
    written = ends[-1][1] if ends else 0
    if written != num_rows:
        raise RuntimeError(f"the output holds {written} rows of {num_rows}")
    samples = [(t, rss, rows_at(size, ends)) for t, rss, size in raw]
    return {
        "load1": load1,
        "wall_s": round(seconds, 1),
        "rows_per_s": round(num_rows / seconds, 1),
        "output_row_groups": len(ends),
        **memory_profile(samples, num_rows),
        "samples": samples,
    }, output


# --- resume ----------------------------------------------------------------------------


def resumed_counts(stderr: str) -> tuple[int, int]:
    """What `freight run --resume` said: (rows already in the output, rows it ran)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", stderr).split())
    kept = re.search(r"resuming: (\d+) rows are already in", text)
    ran = re.search(r"(\d+) rows answered, (\d+) failed", text)
    if ran is None:
        raise RuntimeError(f"no closing line in what freight run printed: {text[-500:]}")
    return (int(kept[1]) if kept else 0), int(ran[1]) + int(ran[2])


def whole_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def compare_rows(clean: Path, resumed: Path) -> tuple[int, int]:
    """(rows compared, rows that differ or are missing or extra) between the clean run's
    Parquet output and the resumed run's JSONL output, read side by side."""
    num_compared = num_differ = 0
    with open(resumed, "rb") as fh:
        lines = iter(fh)
        for batch in pq.ParquetFile(clean).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                line = next(lines, None)
                num_compared += 1
                if line is None or json.loads(line) != json.loads(json.dumps(row, default=str)):
                    num_differ += 1
        num_differ += sum(1 for _ in lines)
    return num_compared, num_differ


def measure_resume(
    tmp: Path, table: Path, num_rows: int, env: dict[str, str], clean: Path
) -> dict[str, Any]:
    """The resume check: killed at half way, resumed, counted and compared with `clean`."""
    output = tmp / "resume-out.jsonl"
    log_path = tmp / "killed.log"
    target = num_rows // 2
    seen = position = 0
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = start(command(table, output), env, log)
        while proc.poll() is None and seen < target:
            if output.exists():
                with open(output, "rb") as fh:
                    fh.seek(position)
                    data = fh.read()
                position += len(data)
                seen += data.count(b"\n")
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_s = time.perf_counter() - started
    if proc.returncode == 0:
        raise RuntimeError("the run ended before half its rows were written: nothing to resume")
    check_exit(proc, log_path, allowed=(-signal.SIGKILL,))
    killed_at = whole_lines(output)  # rows the killed run wrote whole
    resume_log = tmp / "resumed.log"
    with open(resume_log, "w") as log:
        started = time.perf_counter()
        proc = start(command(table, output, "--resume"), env, log)
        proc.wait()
        resumed_s = time.perf_counter() - started
    check_exit(proc, resume_log)
    kept, ran = resumed_counts(resume_log.read_text(errors="replace"))
    num_compared, num_differ = compare_rows(clean, output)
    return {
        "killed_after_s": round(killed_s, 1),
        "killed_at_rows": killed_at,
        "resumed_s": round(resumed_s, 1),
        "rows_kept": kept,
        "rows_run_after_resume": ran,
        "rows_run_twice": kept + ran - num_rows,
        "output_rows": whole_lines(output),
        "rows_compared": num_compared,
        "rows_differ": num_differ,
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "tables", repeats=1)
    parser.add_argument("--rows", type=int, default=None, help="default 1,000,000")
    args = harness.parse(parser, argv)
    num_rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    run = harness.Run("tables", args, argv)
    run.engine = {"engine": "echo", "note": "zero-cost engine: Freight's own work only"}
    with harness.scratch("freight-tables-") as tmp:
        home = tmp / "home"
        home.mkdir()
        (home / "freight.toml").write_text(ECHO_TOML)
        env = freight_env(home)
        table = write_table(tmp / "reviews.parquet", num_rows, args.seed)
        memory, clean = measure_memory(tmp, table, num_rows, env)
        print(json.dumps({k: v for k, v in memory.items() if k != "samples"}, indent=1))
        resume = measure_resume(tmp, table, num_rows, env, clean)
        print(json.dumps(resume, indent=1))
        run.write(
            {
                "settings": harness.settings(args),
                "rows": num_rows,
                "input_bytes": table.stat().st_size,
                "prompt": PROMPT,
                "memory": memory,
                "resume": resume,
            }
        )


if __name__ == "__main__":
    main()
