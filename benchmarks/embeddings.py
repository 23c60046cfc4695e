"""Embeddings throughput: a batch file against real-time requests, side by side in one run.

The same N short texts (seeded; default 600) go through four systems, in a fresh
seeded random order every repeat:
  direct      sentence-transformers `encode()` on the same model folder, in-process, no
              Freight: the ceiling for this machine
  batch       the HTTP API end to end with the official SDK: upload a /v1/embeddings batch
              file (one text per line), create the batch, poll, download the output
  one-by-one  POST /v1/embeddings once per text through the SDK, each awaited before the
              next is sent: a client without batches, one text at a time
  lists       POST /v1/embeddings with `--list-size` texts per request, one request after
              another: what a client without batches more likely does
The model is loaded and warmed before timing (start excluded on every path). Reported:
every raw sample, embeddings/s per system (median, min-max) and the medians of
per-repeat ratios (target: batch >= 10 x one-by-one).

    python -m benchmarks.embeddings [--texts 600] [--dtype float32|bfloat16]
        [--list-size 64] [--repeats 3] [--quick] [--name embeddings]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn
from rich.console import Console

from benchmarks import harness
from benchmarks.workloads import WORDS
from freight import config
from freight.app import create_app
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service.runtime import Service

MODEL = config.DEFAULT_EMBEDDING_MODEL
console = Console(stderr=True)
SYSTEMS = ("direct", "batch", "one-by-one", "lists")
TEXTS = 600
QUICK_TEXTS = 200


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
            body = {"model": MODEL, "input": text}
            line = {"custom_id": f"t{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
            fh.write(json.dumps(line) + "\n")
    started = time.perf_counter()
    uploaded = await client.files.create(file=path, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.05)
        batch = await client.batches.retrieve(batch.id)
    if batch.status != "completed" or not batch.output_file_id:
        raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
    content = await client.files.content(batch.output_file_id)
    lines = content.text.splitlines()
    seconds = time.perf_counter() - started
    if len(lines) != len(texts):
        raise RuntimeError(f"{len(lines)} results for {len(texts)} texts")
    return seconds


async def run_requests(client: openai.AsyncOpenAI, texts: list[str], per_request: int) -> float:
    """Real-time requests of `per_request` texts each, one after another."""
    started = time.perf_counter()
    for i in range(0, len(texts), per_request):
        chunk = texts[i : i + per_request]
        result = await client.embeddings.create(
            model=MODEL, input=chunk if per_request > 1 else chunk[0], encoding_format="float"
        )
        if len(result.data) != len(chunk):
            raise RuntimeError(f"{len(result.data)} embeddings for {len(chunk)} texts")
    return time.perf_counter() - started


async def measure(args: Any, tmp: Path) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = config.Settings(
        home=tmp / "home",
        model_cache=harness.REPO / ".freight" / "models",
        embeddings=config.EmbeddingsSettings(dtype=args.dtype),  # type: ignore[call-arg]
        # the result cache off: each repeat embeds the same texts, on the engine
        cache=config.CacheSettings(enabled=False),  # type: ignore[call-arg]
    )
    registry = Registry(settings)
    pool = EnginePool(settings, registry)
    texts = short_texts(args.texts or (QUICK_TEXTS if args.quick else TEXTS))
    console.print("loading the model and warming it up (not timed)...")
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
    port = harness.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench")
    await run_requests(client, short_texts(16, seed=98), 1)  # warm the HTTP path
    samples: list[harness.Sample] = []
    orders = []
    try:
        for repeat in range(args.repeats):
            sequence = harness.order(SYSTEMS, args.seed, repeat, key="embeddings")
            orders.append(sequence)
            for position, system in enumerate(sequence):
                load1 = harness.load1()
                if system == "direct":
                    seconds = await asyncio.to_thread(run_direct, direct_model, texts)
                elif system == "batch":
                    seconds = await run_batch(client, texts, tmp)
                elif system == "one-by-one":
                    seconds = await run_requests(client, texts, 1)
                else:
                    seconds = await run_requests(client, texts, args.list_size)
                samples.append(
                    harness.Sample(
                        system=system,
                        repeat=repeat,
                        position=position,
                        seconds=seconds,
                        num_requests=len(texts),
                        prompt_tokens=0,
                        output_tokens_delivered=0,
                        load1=load1,
                    )
                )
                console.print(
                    f"r{repeat + 1} {system:10s} {len(texts) / seconds:8.1f} embeddings/s "
                    f"({len(texts)} texts in {seconds:.2f} s)"
                )
    finally:
        server.should_exit = True
        await serving
        await pool.shutdown()
    return {
        "texts": len(texts),
        "orders": orders,
        "samples": [s.to_dict() for s in samples],
        "summary": harness.summarise(
            samples, baselines=("one-by-one", "lists", "direct"), ratio_metric="requests"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "embeddings")
    parser.add_argument("--texts", type=int, default=None, help=f"default {TEXTS}")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--list-size", type=int, default=64, help="texts per request (lists)")
    args = harness.parse(parser, argv)
    run = harness.Run("embeddings", args, argv)
    run.engine = {"engine": "sentence-transformers", "model": MODEL, "dtype": args.dtype}
    with harness.scratch("freight-bench-emb-") as tmp:
        result = asyncio.run(measure(args, tmp))
        run.write({"settings": harness.settings(args), **result})


if __name__ == "__main__":
    main()
