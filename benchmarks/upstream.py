"""Freight's HTTP engine against its upstream asked directly: what the extra hop costs.

The upstream is a `freight serve` whose only model is the echo engine with a fixed
delay per request (a stand-in for a model server with a known latency); the
downstream is a second `freight serve` whose model `up` is that upstream through the
HTTP engine (engine = "http"). Measured, with the same number of requests:

- direct: real-time chat completions sent straight to the upstream, `--concurrency`
  at a time (the client does the flow control by hand);
- through Freight, real time: the same requests sent to the downstream instead;
- through Freight, batch: one batch of them through the downstream, from create to
  `completed` (ingest and finalisation included), with Freight's adaptive concurrency
  finding the level by itself (reported: requests/s and the limit it ended at).

    .venv/bin/python -m benchmarks.upstream [--requests 500] [--concurrency 32]
                                            [--delay 0.05]

Results go to benchmarks/results/upstream.json. Keep runs short on shared machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks.control_plane import free_port
from benchmarks.harness import REPO, machine


@contextlib.contextmanager
def serve(home: Path, config: str) -> Iterator[str]:
    """`freight serve` with `config` as its freight.toml; yields its base URL."""
    home.mkdir(parents=True)
    (home / "freight.toml").write_text(config)
    port = free_port()
    env = {**os.environ, "FREIGHT_HOME": str(home), "PYTHONPATH": str(REPO / "src")}
    with open(home / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freight.cli",
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                "--no-preload",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"freight serve did not start: see {home / 'serve.log'}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def body(model: str, i: int) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"Please summarise item number {i} in one line."}],
    }


async def real_time(base_url: str, model: str, num: int, concurrency: int) -> float:
    """Requests/s for `num` chat completions, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:

        async def one(i: int) -> None:
            async with limit:
                response = await client.post("/v1/chat/completions", json=body(model, i))
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(num)))
        return num / (time.perf_counter() - start)


def batch(base_url: str, model: str, num: int, tmp: Path) -> float:
    """Requests/s of one batch, from create to completed (client-side wall time)."""
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="bench")
    path = tmp / "batch.jsonl"
    with open(path, "w") as fh:
        for i in range(num):
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
            fh.write(json.dumps({**line, "body": body(model, i)}) + "\n")
    uploaded = client.files.create(file=path, purpose="batch")
    start = time.perf_counter()
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while (b := client.batches.retrieve(created.id)).status not in ("completed", "failed"):
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    assert b.status == "completed" and b.request_counts is not None, b
    assert b.request_counts.completed == num, b
    return num / elapsed


def concurrency_limit(base_url: str) -> float | None:
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith('freight_upstream_concurrency_limit{model="up"}'):
            return float(line.split()[-1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.05, help="upstream seconds a request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        upstream_config = (
            f'[[models]]\nname = "echo"\nengine = "echo"\ndelay_seconds = {args.delay}\n'
        )
        with serve(tmp / "up", upstream_config) as up:
            downstream_config = (
                '[[models]]\nname = "up"\nengine = "http"\n\n[models.upstream]\n'
                f'base_url = "{up}/v1"\nmodel = "echo"\n'
            )
            with serve(tmp / "down", downstream_config) as down:
                direct = asyncio.run(real_time(up, "echo", args.requests, args.concurrency))
                hop = asyncio.run(real_time(down, "up", args.requests, args.concurrency))
                batched = batch(down, "up", args.requests, tmp)
                limit = concurrency_limit(down)
    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "upstream_delay_seconds": args.delay,
        "direct_requests_per_second": round(direct, 1),
        "through_freight_real_time_requests_per_second": round(hop, 1),
        "through_freight_batch_requests_per_second": round(batched, 1),
        "adaptive_concurrency_limit_at_end": limit,
    }
    out = REPO / "benchmarks" / "results" / "upstream.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
