"""Coordination cost of scaling out: requests/s with 1, 2 and 4 workers on PostgreSQL.

For each worker count, a fresh PostgreSQL database, one API-only process
(`freight serve --no-worker`) and N `freight worker` processes, every one with its own
home (as on separate machines) and the files in one shared directory. One batch of
zero-cost requests (the echo engine) goes in through the OpenAI SDK; measured are the
ingest time and the requests/s from `in_progress` to `completed`, so what is left is
Freight's own work: claims, leases, result writes and finalisation on a shared database.

    .venv/bin/python -m benchmarks.scale [--requests 20000] [--workers 1 2 4]
                                         [--admin-url postgresql://postgres@127.0.0.1/test]

Every process shares the machine's cores with PostgreSQL: on a small machine more
workers compete for the same CPUs, so read the numbers as coordination cost, not as the
speed-up of workers on separate machines. Results go to benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
from psycopg import sql

from benchmarks.control_plane import free_port, write_file
from benchmarks.harness import REPO, machine

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
            [sys.executable, "-m", "freight.cli", *args, "--home", str(home)],
            env={**os.environ, **env},
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


def measure(tmp: Path, admin_url: str, num_workers: int, path: Path, num: int) -> dict[str, Any]:
    run = tmp / f"workers-{num_workers}"
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
    assert batch.status == "completed", batch
    assert batch.request_counts and batch.request_counts.completed == num, batch.request_counts
    assert in_progress_at is not None
    return {
        "workers": num_workers,
        "requests": num,
        "ingest_s": round(in_progress_at - created_at, 3),
        "run_and_finalise_s": round(done_at - in_progress_at, 3),
        "requests_per_s": round(num / (done_at - in_progress_at), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="freight-scale-"))
    path = write_file(tmp / "input.jsonl", args.requests)
    rows = []
    for num_workers in args.workers:
        row = measure(tmp, args.admin_url, num_workers, path, args.requests)
        print(json.dumps(row))
        rows.append(row)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python -m benchmarks.scale " + " ".join(sys.argv[1:]),
        "results": rows,
    }
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "scale.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
