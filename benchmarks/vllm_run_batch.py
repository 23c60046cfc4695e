"""vLLM's own run-batch, timed without its engine start-up and warm-up.

Does what `python -m vllm.entrypoints.openai.run_batch` does (vLLM's `run_batch()`
on an engine client built from the same arguments), with a clock around `run_batch()`
only. Before the clock starts it runs the same warm-up file Freight's engine runs and
empties the prefix cache, so start-up and first-call costs are excluded exactly as they
are for Freight:
    python -m benchmarks.vllm_run_batch TIMING.json WARM.jsonl -i IN.jsonl -o OUT.jsonl ...
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time


async def _main(timing_path: str, warm_path: str) -> None:
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.run_batch import (
        parse_args,
        run_batch,
        validate_run_batch_args,
    )
    from vllm.usage.usage_lib import UsageContext

    args = parse_args()
    validate_run_batch_args(args)
    warm = copy.copy(args)
    warm.input_file, warm.output_file = warm_path, warm_path + ".out"
    async with build_async_engine_client(
        args, usage_context=UsageContext.OPENAI_BATCH_RUNNER
    ) as engine_client:
        await run_batch(engine_client, warm)
        await engine_client.reset_prefix_cache()
        started = time.perf_counter()
        await run_batch(engine_client, args)
        seconds = time.perf_counter() - started
    with open(timing_path, "w") as fh:
        json.dump({"seconds": seconds}, fh)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv.pop(1), sys.argv.pop(1)))
