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

    python -m benchmarks.upstream [--requests 300] [--concurrency 16] [--delay 0.05]
        [--repeats 3] [--quick] [--name upstream]

The three measurements run in a fresh seeded random order every repeat; every one is
stored, and the table shows medians and min-max.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks import harness
from benchmarks.control_plane import free_port, freight_env


@contextlib.contextmanager
def serve(home: Path, config: str) -> Iterator[str]:
    """`freight serve` with `config` as its freight.toml; yields its base URL."""
    home.mkdir(parents=True)
    (home / "freight.toml").write_text(config)
    port = free_port()
    env = freight_env(home)
    with open(home / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freight.cli.main",
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
    if b.status != "completed" or b.request_counts is None:
        raise RuntimeError(f"batch ended {b.status}")
    if b.request_counts.completed != num:
        raise RuntimeError(f"{b.request_counts.completed} of {num} requests completed")
    return num / elapsed


def concurrency_limit(base_url: str) -> float | None:
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith('freight_upstream_concurrency_limit{model="up"}'):
            return float(line.split()[-1])
    return None


MEASURES = ("direct", "through_freight_real_time", "through_freight_batch")


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "upstream")
    parser.add_argument("--requests", type=int, default=None, help="default 300")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.05, help="upstream seconds a request")
    args = harness.parse(parser, argv)
    num = args.requests or (50 if args.quick else 300)
    run = harness.Run("upstream", args, argv)
    run.engine = {"engine": "http", "upstream": "echo", "delay_seconds": args.delay}
    rows: list[dict[str, Any]] = []
    limits = []
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
                for repeat in range(args.repeats):
                    for position, what in enumerate(
                        harness.order(MEASURES, args.seed, repeat, key="upstream")
                    ):
                        if what == "direct":
                            rate = asyncio.run(real_time(up, "echo", num, args.concurrency))
                        elif what == "through_freight_real_time":
                            rate = asyncio.run(real_time(down, "up", num, args.concurrency))
                        else:
                            rate = batch(down, "up", num, tmp)
                            limits.append(concurrency_limit(down))
                        row = {"repeat": repeat, "position": position, "measure": what}
                        rows.append({**row, "requests_per_second": rate})
                        print(json.dumps(rows[-1]))
    summary = {
        what: harness.spread(r["requests_per_second"] for r in rows if r["measure"] == what)
        for what in MEASURES
    }
    run.write(
        {
            "settings": harness.settings(args),
            "requests": num,
            "results": rows,
            "summary": summary,
            "adaptive_concurrency_limit_at_end": limits,
        }
    )


if __name__ == "__main__":
    main()
