"""Freight's own overhead at scale, isolated with the zero-cost echo engine.

  api   a 100,000-request batch through a real `freight serve` process: upload, then
        validated and ingested (create -> in_progress), then run and finalised
        (in_progress -> completed); peak RSS of the server process (VmHWM).
  run   a 1,000,000-request file through `freight run` (a subprocess): wall time, and
        its resident memory sampled every second (flat memory = no growth with progress).

    .venv/bin/python -m benchmarks.control_plane [--api-requests 100000]
                                                 [--run-requests 1000000]
Targets (issue 5): ingest <= 10 s, run + finalise <= 60 s, peak RSS <= 500 MB;
1,000,000 through `freight run` <= 10 minutes with flat memory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks.harness import REPO, machine

ECHO_TOML = '[[models]]\nname = "echo"\nengine = "echo"\n'


def write_file(path: Path, num: int) -> Path:
    with open(path, "w") as fh:
        for i in range(num):
            fh.write(
                json.dumps(
                    {
                        "custom_id": f"request-{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "echo",
                            "max_tokens": 16,
                            "messages": [
                                {"role": "system", "content": "You are a helpful assistant."},
                                {
                                    "role": "user",
                                    "content": f"Please summarise item number {i} in one line.",
                                },
                            ],
                        },
                    }
                )
                + "\n"
            )
    return path


def memory_kb(pid: int, field: str) -> int:
    for raw in Path(f"/proc/{pid}/status").read_text().splitlines():
        if raw.startswith(field + ":"):
            return int(raw.split()[1])
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_api(tmp: Path, num: int) -> dict[str, Any]:
    home = tmp / "api-home"
    home.mkdir()
    (home / "freight.toml").write_text(ECHO_TOML)
    path = write_file(tmp / "api.jsonl", num)
    port = free_port()
    env = {**os.environ, "FREIGHT_HOME": str(home)}
    with open(tmp / "serve.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "freight.cli", "serve", "--port", str(port), "--no-preload"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", timeout=600)
        started = time.perf_counter()
        uploaded = client.files.create(file=path, purpose="batch")
        uploaded_at = time.perf_counter()
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        created_at = time.perf_counter()
        in_progress_at = None
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
            if in_progress_at is None and batch.status != "validating":
                in_progress_at = time.perf_counter()
        done_at = time.perf_counter()
        assert batch.status == "completed", batch
        assert batch.request_counts and batch.request_counts.completed == num
        peak_kb = memory_kb(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert in_progress_at is not None
    return {
        "requests": num,
        "upload_s": uploaded_at - started,
        "ingest_s": in_progress_at - created_at,
        "run_and_finalise_s": done_at - in_progress_at,
        "total_s": done_at - started,
        "peak_rss_mb": peak_kb / 1024,
    }


def measure_run(tmp: Path, num: int) -> dict[str, Any]:
    home = tmp / "run-home"
    home.mkdir()
    (home / "freight.toml").write_text(ECHO_TOML)
    path = write_file(tmp / "run.jsonl", num)
    out = tmp / "run-out.jsonl"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "freight.cli", "run", str(path), "-o", str(out)],
        env={**os.environ, "FREIGHT_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = []
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - started, memory_kb(proc.pid, "VmRSS") / 1024))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(1.0)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, f"freight run exited {proc.returncode}"
    with open(out, "rb") as fh:
        num_lines = sum(1 for _ in fh)
    assert num_lines == num, f"{num_lines} output lines for {num} requests"
    rss = [mb for _, mb in samples]
    return {
        "requests": num,
        "wall_s": seconds,
        "rss_mb_max": max(rss),
        "rss_mb_at_10_50_90_percent_of_time": [rss[int(len(rss) * q)] for q in (0.1, 0.5, 0.9)],
        "rss_samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-requests", type=int, default=100_000)
    parser.add_argument("--run-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="freight-control-"))
    api = measure_api(tmp, args.api_requests)
    print(json.dumps(api, indent=1))
    run = measure_run(tmp, args.run_requests)
    print(json.dumps({k: v for k, v in run.items() if k != "rss_samples"}, indent=1))
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python -m benchmarks.control_plane " + " ".join(sys.argv[1:]),
        "api": api,
        "run": run,
    }
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "control_plane.json").write_text(
        json.dumps(result, indent=1)
    )


if __name__ == "__main__":
    main()
