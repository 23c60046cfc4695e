"""Freight's own overhead at scale, isolated with the zero-cost echo engine.

  api   a 100,000-request batch through a real `freight serve` process: upload, then
        validated and ingested (create -> in_progress), then run and finalised
        (in_progress -> completed); peak RSS of the server process (VmHWM).
  run   a 1,000,000-request file through `freight run` (a subprocess): wall time, and
        its resident memory sampled every second (flat memory = no growth with progress).
  store the size on disk of the API run's home once its batch completed (database and
        files: input, output), and that size scaled to 1,000,000 requests (an
        extrapolation from the measured size, stated as such in the table).

    python -m benchmarks.control_plane [--api-requests 100000] [--run-requests 1000000]
        [--repeats 1] [--quick] [--name control_plane]
Targets (issue 5): ingest <= 10 s, run + finalise <= 60 s, peak RSS <= 500 MB;
1,000,000 through `freight run` <= 10 minutes with flat memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks import harness

# The result cache off: these benchmarks measure work done, and would otherwise see files
# run again in one home answered from the store (benchmarks/cache.py measures that).
ECHO_TOML = '[[models]]\nname = "echo"\nengine = "echo"\n\n[cache]\nenabled = false\n'


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
    return harness.free_port()


def freight_env(home: Path) -> dict[str, str]:
    """This checkout's Freight, with no FREIGHT_* settings leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREIGHT_")}
    env["FREIGHT_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(harness.REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_size(home: Path, num: int) -> dict[str, Any]:
    """What the home holds on disk after the batch (database, files), and per 1,000,000
    requests by linear extrapolation from this one measurement."""
    database = sum(p.stat().st_size for p in home.glob("freight.db*"))
    files = disk_bytes(home / "files") if (home / "files").exists() else 0
    total = disk_bytes(home)
    return {
        "requests": num,
        "database_bytes": database,
        "files_bytes": files,
        "total_bytes": total,
        "bytes_per_request": total / num,
        "extrapolated_bytes_per_million_requests": round(total / num * 1_000_000),
    }


def measure_api(tmp: Path, num: int, repeat: int = 0) -> dict[str, Any]:
    home = tmp / f"api-home-{repeat}"
    home.mkdir()
    (home / "freight.toml").write_text(ECHO_TOML)
    path = write_file(tmp / f"api-{repeat}.jsonl", num)
    port = free_port()
    env = freight_env(home)
    with open(tmp / f"serve-{repeat}.log", "w") as log:  # outside the home it measures
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freight.cli.main",
                "serve",
                "--port",
                str(port),
                "--no-preload",
            ],
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
        load1 = harness.load1()
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
        if batch.status != "completed" or not batch.request_counts:
            raise RuntimeError(f"batch ended {batch.status}")
        if batch.request_counts.completed != num:
            raise RuntimeError(f"{batch.request_counts.completed} of {num} requests completed")
        peak_kb = memory_kb(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert in_progress_at is not None
    return {
        "repeat": repeat,
        "load1": load1,
        "requests": num,
        "upload_s": uploaded_at - started,
        "ingest_s": in_progress_at - created_at,
        "run_and_finalise_s": done_at - in_progress_at,
        "total_s": done_at - started,
        "peak_rss_mb": peak_kb / 1024,
        "store": store_size(home, num),
    }


def measure_run(tmp: Path, num: int) -> dict[str, Any]:
    home = tmp / "run-home"
    home.mkdir()
    (home / "freight.toml").write_text(ECHO_TOML)
    path = write_file(tmp / "run.jsonl", num)
    out = tmp / "run-out.jsonl"
    load1 = harness.load1()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "freight.cli.main", "run", str(path), "-o", str(out)],
        env=freight_env(home),
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
    if proc.returncode != 0:
        raise RuntimeError(f"freight run exited {proc.returncode}")
    with open(out, "rb") as fh:
        num_lines = sum(1 for _ in fh)
    if num_lines != num:
        raise RuntimeError(f"{num_lines} output lines for {num} requests")
    rss = [mb for _, mb in samples]
    return {
        "load1": load1,
        "requests": num,
        "wall_s": seconds,
        "rss_mb_max": max(rss),
        "rss_mb_at_10_50_90_percent_of_time": [rss[int(len(rss) * q)] for q in (0.1, 0.5, 0.9)],
        "rss_samples": samples,
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "control_plane", repeats=1)
    parser.add_argument("--api-requests", type=int, default=None, help="default 100,000")
    parser.add_argument("--run-requests", type=int, default=None, help="default 1,000,000")
    args = harness.parse(parser, argv)
    api_requests = args.api_requests or (10_000 if args.quick else 100_000)
    run_requests = args.run_requests or (100_000 if args.quick else 1_000_000)
    run = harness.Run("control_plane", args, argv)
    run.engine = {"engine": "echo", "note": "zero-cost engine: Freight's own work only"}
    with harness.scratch("freight-control-") as tmp:
        apis = []
        for repeat in range(args.repeats):
            apis.append(measure_api(tmp, api_requests, repeat))
            print(json.dumps(apis[-1], indent=1))
        measured = measure_run(tmp, run_requests)
        print(json.dumps({k: v for k, v in measured.items() if k != "rss_samples"}, indent=1))
        result = {
            "settings": harness.settings(args),
            "api": apis[0] if len(apis) == 1 else summarise_api(apis),
            "api_repeats": apis,
            "run": measured,
        }
        run.write(result)


def summarise_api(apis: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats, for the table (every repeat is in api_repeats)."""
    import statistics

    keys = ("upload_s", "ingest_s", "run_and_finalise_s", "total_s", "peak_rss_mb")
    out: dict[str, Any] = {k: statistics.median(a[k] for a in apis) for k in keys}
    out["requests"] = apis[0]["requests"]
    out["store"] = apis[0]["store"]
    return out


if __name__ == "__main__":
    main()
