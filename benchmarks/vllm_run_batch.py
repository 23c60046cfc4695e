"""vLLM's own run-batch, timed without its engine start-up.

Does what `python -m vllm.entrypoints.openai.run_batch` does (vLLM's `run_batch()`
on an engine client built from the same arguments), with a clock around `run_batch()`
only, so engine start-up is excluded exactly as it is for Freight:
    python -m benchmarks.vllm_run_batch TIMING.json -i IN.jsonl -o OUT.jsonl --model DIR ...
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _main(timing_path: str) -> None:
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.run_batch import (
        parse_args,
        run_batch,
        validate_run_batch_args,
    )
    from vllm.usage.usage_lib import UsageContext

    args = parse_args()
    validate_run_batch_args(args)
    async with build_async_engine_client(
        args, usage_context=UsageContext.OPENAI_BATCH_RUNNER
    ) as engine_client:
        started = time.perf_counter()
        await run_batch(engine_client, args)
        seconds = time.perf_counter() - started
    with open(timing_path, "w") as fh:
        json.dump({"seconds": seconds}, fh)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv.pop(1)))
