"""What one engine step costs, by how many sequences it decodes and how many prompt tokens
it prefills: the numbers behind the real-time/batch trade (BENCHMARKS.md, hybrid).

vLLM's offline `LLM` on the default chat model with Freight's engine settings, in this
process. Decode: N sequences of 32 random prompt tokens generate 64 tokens and then 4
(`ignore_eos`); the difference over the 60 extra steps is the time of one step with N
sequences in it. Prefill: 64 distinct prompts of 256 tokens with `max_tokens` 1, per
prompt token. From these, for each N: batch decode tokens/s, and how long a 16-token
real-time answer takes beside N - 1 batch sequences (17 steps) against the engine alone.

    python -m benchmarks.step_cost [--sizes 1,8,16,32,64,128,256] [--eager]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import harness, workloads
from benchmarks.vllm_offline import offline_llm
from freight import config
from freight.models import Registry

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def prompts(num: int, length: int, rng: random.Random) -> list[dict[str, list[int]]]:
    return [
        {"prompt_token_ids": [rng.randrange(1000, 20000) for _ in range(length)]}
        for _ in range(num)
    ]


def timed(llm: Any, batch: list[dict[str, list[int]]], max_tokens: int) -> float:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    started = time.perf_counter()
    llm.generate(batch, params, use_tqdm=False)
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = config.Settings(
        model_cache=REPO / ".freight" / "models",
        engine=config.EngineSettings(enforce_eager=args.eager),  # type: ignore[call-arg]
    )
    registry = Registry(settings)
    model_dir = registry.weights_dir(registry.get(workloads.MODEL))
    e = settings.engine
    # every prompt token is computed
    llm = offline_llm(str(model_dir), e.model_dump(), enable_prefix_caching=False)
    rng = random.Random(0)
    timed(llm, prompts(8, 32, rng), 8)  # warm-up
    decode = []
    for num in [int(x) for x in args.sizes.split(",")]:
        long = timed(llm, prompts(num, 32, rng), 64)
        short = timed(llm, prompts(num, 32, rng), 4)
        step = (long - short) / 60
        decode.append({"sequences": num, "step_ms": step * 1000, "decode_tok_s": num / step})
        print(f"{num} sequences: {step * 1000:.1f} ms per step", file=sys.stderr)
    prefill_s = timed(llm, prompts(64, 256, rng), 1)
    per_token_ms = prefill_s / (64 * 256) * 1000
    alone = decode[0]["step_ms"]
    print("| sequences in a step | step (ms) | decode tok/s | 16-token answer beside them |")
    print("|---|---|---|---|")
    for row in decode:
        row["realtime_x_alone"] = row["step_ms"] / alone
        print(
            f"| {row['sequences']} | {row['step_ms']:.1f} | {row['decode_tok_s']:.0f} "
            f"| {17 * row['step_ms'] / 1000:.2f} s ({row['realtime_x_alone']:.1f} x) |"
        )
    print(f"prefill: {per_token_ms:.2f} ms per prompt token (64 x 256 tokens)")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": harness.machine(),
        "command": "python -m benchmarks.step_cost " + " ".join(sys.argv[1:]),
        "engine": e.model_dump(),
        "decode": decode,
        "prefill_ms_per_token": per_token_ms,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,8,16,32,64,128,256")
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (faster start)")
    arguments = parser.parse_args()
    result = main(arguments)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_cost.json").write_text(json.dumps(result, indent=1))
