"""Freight's overhead against raw vLLM, measured side by side in one run.

The same 256 chat requests (mixed prompt lengths, max_tokens 64, temperature 0) go
through four paths, interleaved and repeated:
  vllm     vLLM's own offline `LLM.chat` (subprocess, engine start excluded)
  engine   every request straight into Freight's warm vLLM AsyncLLM at once, no Freight
           machinery: the ceiling for the two Freight paths on the same engine
  run      `freight run`'s code path (validation, store, worker, output file) in-process
  api      the HTTP API end to end with the official SDK: upload, create, poll, download
The last three share one warm engine (start excluded, as for vLLM). Reported:
generated tokens/s per path (median, min-max) and ratios to `vllm` and to `engine`.

    .venv/bin/python -m benchmarks.overhead [--requests 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn
from rich.console import Console

from benchmarks import workloads
from freight import config, offline
from freight.api.app import create_app
from freight.engines.pool import EnginePool
from freight.models import Registry
from freight.protocol import endpoints
from freight.service import Service

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
console = Console(stderr=True)
PATHS = ("vllm", "engine", "run", "api")
LABELS = {
    "vllm": "vLLM `LLM.chat` (offline)",
    "engine": "vLLM AsyncLLM, all requests at once",
    "run": "`freight run`",
    "api": "Freight API end to end (SDK)",
}


def output_tokens(path: Path) -> int:
    total = 0
    for raw in path.read_text().splitlines():
        response = json.loads(raw)["response"]
        if response and response["status_code"] == 200:
            total += response["body"]["usage"]["completion_tokens"]
    return total


def run_vllm(settings: config.Settings, model_dir: Path, input_path: Path) -> dict[str, Any]:
    result_path = input_path.with_suffix(".vllm.json")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.vllm_offline",
            str(model_dir),
            str(input_path),
            settings.engine.model_dump_json(),
            str(result_path),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result = json.loads(result_path.read_text())
    return {"seconds": result["seconds"], "output_tokens": result["output_tokens"]}


async def run_engine(pool: EnginePool, input_path: Path) -> dict[str, Any]:
    """All requests straight into the engine, through the same endpoint translation."""
    engine = await pool.get(workloads.MODEL)
    endpoint = endpoints.ENDPOINTS["/v1/chat/completions"]
    bodies = [
        endpoint.request_model.model_validate(json.loads(x)["body"])
        for x in input_path.read_text().splitlines()
    ]
    started = time.perf_counter()
    generations = await asyncio.gather(
        *(
            engine.generate(endpoint.to_generations(body, f"raw-{time.time_ns()}-{i}")[0])
            for i, body in enumerate(bodies)
        )
    )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "output_tokens": sum(g.num_output_tokens for g in generations)}


async def run_offline(
    settings: config.Settings, pool: EnginePool, input_path: Path, tmp: Path
) -> dict[str, Any]:
    out = tmp / "run-out.jsonl"
    started = time.perf_counter()
    code = await offline.run_file_async(
        settings, input_path, out, None, None, console=Console(quiet=True), engines=pool
    )
    seconds = time.perf_counter() - started
    assert code == 0, f"freight run exited {code}"
    return {"seconds": seconds, "output_tokens": output_tokens(out)}


async def run_api(client: openai.AsyncOpenAI, input_path: Path, tmp: Path) -> dict[str, Any]:
    started = time.perf_counter()
    uploaded = await client.files.create(file=input_path, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.05)
        batch = await client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id, batch
    content = await client.files.content(batch.output_file_id)
    out = tmp / "api-out.jsonl"
    out.write_bytes(content.read())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "output_tokens": output_tokens(out)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="freight-bench-"))
    settings = config.Settings(home=tmp / "home", model_cache=REPO / ".freight" / "models")
    input_path = workloads.write(workloads.mixed(args.requests), tmp / "mixed.jsonl")
    registry = Registry(settings)
    model_dir = registry.weights_dir(registry.get(workloads.MODEL))
    pool = EnginePool(settings, registry)
    console.print("starting Freight's engine and warming it up (excluded from timings)...")
    await pool.get(workloads.MODEL)
    warm = workloads.write(workloads.mixed(32, seed=99), tmp / "warm.jsonl")
    await run_engine(pool, warm)

    svc = Service(settings, engines=pool)
    port = 8700 + (int(time.time()) % 200)
    server = uvicorn.Server(
        uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench")

    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in PATHS}
    for repeat in range(args.repeats):
        for name in PATHS:
            if name == "vllm":
                result = await asyncio.to_thread(run_vllm, settings, model_dir, input_path)
            elif name == "engine":
                result = await run_engine(pool, input_path)
            elif name == "run":
                result = await run_offline(settings, pool, input_path, tmp)
            else:
                result = await run_api(client, input_path, tmp)
            result["tokens_per_s"] = result["output_tokens"] / result["seconds"]
            samples[name].append(result)
            console.print(
                f"round {repeat + 1} {name:5s} {result['tokens_per_s']:8.1f} tok/s "
                f"({result['output_tokens']} tokens in {result['seconds']:.2f} s)"
            )
    server.should_exit = True
    await serving
    await pool.shutdown()
    return summarise(samples, args)


def summarise(samples: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict:
    rates = {k: [s["tokens_per_s"] for s in v] for k, v in samples.items()}
    median = {k: statistics.median(v) for k, v in rates.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "command": "python -m benchmarks.overhead " + " ".join(sys.argv[1:]),
        "requests": args.requests,
        "repeats": args.repeats,
        "tokens_per_s": {
            k: {"median": median[k], "min": min(v), "max": max(v)} for k, v in rates.items()
        },
        "ratio_to_vllm": {k: median[k] / median["vllm"] for k in PATHS},
        "ratio_to_engine": {k: median[k] / median["engine"] for k in PATHS},
        "samples": samples,
    }
    print("| path | generated tok/s, median | min-max | x vLLM offline | x AsyncLLM direct |")
    print("|---|---|---|---|---|")
    for name in PATHS:
        print(
            f"| {LABELS[name]} | {median[name]:.1f} | {min(rates[name]):.1f}-"
            f"{max(rates[name]):.1f} | {report['ratio_to_vllm'][name]:.2f} | "
            f"{report['ratio_to_engine'][name]:.2f} |"
        )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(result, indent=1))
