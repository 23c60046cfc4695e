"""Embeddings throughput: a batch file vs one request at a time, side by side in one run.

The same N short texts (seeded; default 10,000) go through three paths:
  direct      sentence-transformers `encode()` on the same model folder, in-process, no
              Freight: the ceiling for this machine
  batch       the HTTP API end to end with the official SDK: upload a /v1/embeddings batch
              file (one text per line), create the batch, poll, download the output
  one-by-one  POST /v1/embeddings once per text through the SDK, each awaited before the
              next is sent: what a client without batches does
The model is loaded and warmed before timing (start excluded on every path). Reported:
embeddings/s per path (median, min-max over repeats) and the batch path's speed-up over
one-by-one (target: at least 10x).

    .venv/bin/python -m benchmarks.embeddings [--texts 10000] [--repeats 1] [--dtype float32]
    .venv/bin/python -m benchmarks.embeddings --texts 200   # a quick check that it runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn
from rich.console import Console

from benchmarks.workloads import WORDS
from freight import config
from freight.api.app import create_app
from freight.engines.pool import EnginePool
from freight.models import Registry
from freight.service import Service

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODEL = config.DEFAULT_EMBEDDING_MODEL
console = Console(stderr=True)
PATHS = ("direct", "batch", "one-by-one")
LABELS = {
    "direct": "sentence-transformers `encode()` (no Freight)",
    "batch": "Freight batch, API end to end (SDK)",
    "one-by-one": "Freight real time, one request at a time (SDK)",
}


def short_texts(num: int, seed: int = 7) -> list[str]:
    """Review-sized texts of 6-20 words; distinct, so nothing is served twice."""
    rng = random.Random(seed)
    return [
        f"#{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20)))
        for i in range(num)
    ]


def run_direct(model: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    model.encode(texts, batch_size=64)
    return time.perf_counter() - started


async def run_batch(client: openai.AsyncOpenAI, texts: list[str], tmp: Path) -> float:
    path = tmp / "embeddings.jsonl"
    with open(path, "w") as fh:
        for i, text in enumerate(texts):
            line = {"model": MODEL, "input": text}
            fh.write(
                json.dumps(
                    {"custom_id": f"t{i}", "method": "POST", "url": "/v1/embeddings", "body": line}
                )
                + "\n"
            )
    started = time.perf_counter()
    uploaded = await client.files.create(file=path, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.05)
        batch = await client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id, batch
    content = await client.files.content(batch.output_file_id)
    lines = content.text.splitlines()
    seconds = time.perf_counter() - started
    assert len(lines) == len(texts), f"{len(lines)} results for {len(texts)} texts"
    return seconds


async def run_one_by_one(client: openai.AsyncOpenAI, texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        result = await client.embeddings.create(model=MODEL, input=text, encoding_format="float")
        assert len(result.data) == 1
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="freight-bench-emb-"))
    settings = config.Settings(
        home=tmp / "home",
        model_cache=REPO / ".freight" / "models",
        embeddings=config.EmbeddingsSettings(dtype=args.dtype),
    )
    registry = Registry(settings)
    pool = EnginePool(settings, registry)
    texts = short_texts(args.texts)
    console.print("loading the model and warming it up (excluded from timings)...")
    import torch
    from sentence_transformers import SentenceTransformer

    direct_model = SentenceTransformer(
        str(registry.weights_dir(registry.get(MODEL))),
        local_files_only=True,
        model_kwargs={"dtype": getattr(torch, args.dtype)},
    )
    direct_model.encode(short_texts(64, seed=99))
    await pool.get_embedder(MODEL)

    svc = Service(settings, engines=pool)
    port = 8900 + (int(time.time()) % 200)
    server = uvicorn.Server(
        uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench")
    await run_one_by_one(client, short_texts(16, seed=98))  # warm the HTTP path

    samples: dict[str, list[float]] = {name: [] for name in PATHS}
    for repeat in range(args.repeats):
        for name in PATHS:
            if name == "direct":
                seconds = await asyncio.to_thread(run_direct, direct_model, texts)
            elif name == "batch":
                seconds = await run_batch(client, texts, tmp)
            else:
                seconds = await run_one_by_one(client, texts)
            samples[name].append(len(texts) / seconds)
            console.print(
                f"round {repeat + 1} {name:10s} {len(texts) / seconds:8.1f} embeddings/s "
                f"({len(texts)} texts in {seconds:.2f} s)"
            )
    server.should_exit = True
    await serving
    await pool.shutdown()
    return summarise(samples, args)


def summarise(samples: dict[str, list[float]], args: argparse.Namespace) -> dict[str, Any]:
    median = {k: statistics.median(v) for k, v in samples.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "command": "python -m benchmarks.embeddings " + " ".join(sys.argv[1:]),
        "texts": args.texts,
        "repeats": args.repeats,
        "dtype": args.dtype,
        "embeddings_per_s": {
            k: {"median": median[k], "min": min(v), "max": max(v)} for k, v in samples.items()
        },
        "batch_speedup_over_one_by_one": median["batch"] / median["one-by-one"],
        "batch_share_of_direct": median["batch"] / median["direct"],
    }
    print("| path | embeddings/s, median | min-max |")
    print("|---|---|---|")
    for name in PATHS:
        rates = samples[name]
        print(f"| {LABELS[name]} | {median[name]:.1f} | {min(rates):.1f}-{max(rates):.1f} |")
    print(
        f"\nbatch vs one-by-one: {report['batch_speedup_over_one_by_one']:.1f}x; "
        f"batch reaches {report['batch_share_of_direct']:.0%} of direct encode()"
    )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embeddings.json").write_text(json.dumps(result, indent=1))
