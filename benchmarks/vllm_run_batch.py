"""vLLM's own run-batch kept warm, for the steady-throughput view (start-up excluded).

Does what `python -m vllm.entrypoints.openai.run_batch` does (vLLM's `run_batch()` on
an engine client built from the same arguments), with a clock around `run_batch()`
only. It builds the engine once, runs the same warm-up file Freight's engine runs, and
then serves files one after another: for each line `{"input": IN, "output": OUT}` on
stdin it empties the prefix cache, times `run_batch()` on IN -> OUT and writes one JSON
line `{"seconds": ...}` to file descriptor RESULT_FD (stdout carries vLLM's logs):

    python -m benchmarks.vllm_run_batch RESULT_FD WARM.jsonl -i WARM.jsonl -o X.jsonl ...

The wall-time view runs the real `python -m vllm.entrypoints.openai.run_batch` instead
(benchmarks/processes.py): start-up included, as a user waits for it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
import time


async def _serve(result_fd: int, warm_path: str) -> None:
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.run_batch import (
        parse_args,
        run_batch,
        validate_run_batch_args,
    )
    from vllm.usage.usage_lib import UsageContext

    args = parse_args()  # type: ignore[no-untyped-call]
    validate_run_batch_args(args)  # type: ignore[no-untyped-call]
    warm = copy.copy(args)
    warm.input_file, warm.output_file = warm_path, warm_path + ".run-batch.out"
    with os.fdopen(result_fd, "w", buffering=1) as results:
        async with build_async_engine_client(
            args, usage_context=UsageContext.OPENAI_BATCH_RUNNER
        ) as engine_client:
            await run_batch(engine_client, warm)
            results.write(json.dumps({"ready": True}) + "\n")
            for raw in sys.stdin:
                job = json.loads(raw)
                this = copy.copy(args)
                this.input_file, this.output_file = job["input"], job["output"]
                await engine_client.reset_prefix_cache()
                started = time.perf_counter()
                await run_batch(engine_client, this)
                seconds = time.perf_counter() - started
                results.write(json.dumps({"seconds": seconds}) + "\n")


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv.pop(1)), sys.argv.pop(1)))
