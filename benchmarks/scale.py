"""Coordination cost of scaling out: requests/s with 1, 2 and 4 workers on PostgreSQL.

For each worker count, a fresh PostgreSQL database, one API-only process
(`freight serve --no-worker`) and N `freight worker` processes, every one with its own
home (as on separate machines) and the files in one shared directory. One batch of
zero-cost requests (the echo engine) goes in through the OpenAI SDK; measured are the
ingest time and the requests/s from `in_progress` to `completed`, so what is left is
Freight's own work: claims, leases, result writes and finalisation on a shared database.

    python -m benchmarks.scale [--requests 10000] [--workers 1 2 4] [--repeats 3]
        [--admin-url postgresql://postgres@127.0.0.1/test] [--quick] [--name scale]

Worker counts run in a fresh seeded random order every repeat; every measurement is
stored, and the table shows medians and min-max.

Every process shares the machine's cores with PostgreSQL: on a small machine more
workers compete for the same CPUs, so read the numbers as coordination cost, not as the
speed-up of workers on separate machines.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
from psycopg import sql

from benchmarks import harness
from benchmarks.control_plane import free_port, freight_env, write_file

CONFIG = '[[models]]\nname = "echo"\nengine = "echo"\n'


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh database for one measurement, dropped afterwards."""
    name = f"freight_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    try:
        yield (
            f"postgresql+psycopg://{info.get('user', 'postgres')}@"
            f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def process(home: Path, args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    home.mkdir(parents=True)
    with open(home / "freight.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freight.cli.main", *args, "--home", str(home)],
            env={**freight_env(home), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(
    tmp: Path, admin_url: str, num_workers: int, path: Path, num: int, repeat: int
) -> dict[str, Any]:
    run = tmp / f"workers-{num_workers}-r{repeat}"
    config = run / "freight.toml"
    run.mkdir()
    config.write_text(CONFIG)
    port = free_port()
    with database(admin_url) as url, contextlib.ExitStack() as stack:
        env = {
            "FREIGHT_DATABASE_URL": url,
            "FREIGHT_FILES_URL": str(run / "shared-files"),
            "FREIGHT_CONFIG": str(config),
        }
        args = ["serve", "--no-worker", "--no-preload", "--port", str(port)]
        stack.enter_context(process(run / "api", args, env))
        for i in range(num_workers):
            stack.enter_context(process(run / f"worker{i}", ["worker"], env))
        base = f"http://127.0.0.1:{port}"
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{base}/health", timeout=1)
                break
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", timeout=600)
        uploaded = client.files.create(file=path, purpose="batch")
        created_at = time.perf_counter()
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        in_progress_at = None
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
            if in_progress_at is None and batch.status != "validating":
                in_progress_at = time.perf_counter()
        done_at = time.perf_counter()
    if batch.status != "completed" or not batch.request_counts:
        logs = "".join(
            f"\n--- {log}\n" + log.read_text(errors="replace")[-3000:]
            for log in sorted(run.glob("*/freight.log"))
        )
        raise RuntimeError(f"batch ended {batch.status}: {batch.errors}{logs}")
    if batch.request_counts.completed != num or in_progress_at is None:
        raise RuntimeError(f"{batch.request_counts.completed} of {num} requests completed")
    return {
        "repeat": repeat,
        "workers": num_workers,
        "requests": num,
        "ingest_s": round(in_progress_at - created_at, 3),
        "run_and_finalise_s": round(done_at - in_progress_at, 3),
        "requests_per_s": round(num / (done_at - in_progress_at), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "scale")
    parser.add_argument("--requests", type=int, default=None, help="default 10,000")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = harness.parse(parser, argv)
    num = args.requests or (2_000 if args.quick else 10_000)
    run = harness.Run("scale", args, argv)
    run.engine = {"engine": "echo", "database": "postgresql", "note": "zero-cost engine"}
    with harness.scratch("freight-scale-") as tmp:
        path = write_file(tmp / "input.jsonl", num)
        rows = []
        for repeat in range(args.repeats):
            counts = harness.order([str(w) for w in args.workers], args.seed, repeat, key="scale")
            for num_workers in counts:
                row = measure(tmp, args.admin_url, int(num_workers), path, num, repeat)
                print(json.dumps(row))
                rows.append(row)
        summary = {
            str(w): {
                key: harness.spread(r[key] for r in rows if r["workers"] == w)
                for key in ("ingest_s", "run_and_finalise_s", "requests_per_s")
            }
            for w in args.workers
        }
        run.write(
            {
                "settings": harness.settings(args),
                "requests": num,
                "results": rows,
                "summary": summary,
            }
        )


if __name__ == "__main__":
    main()
