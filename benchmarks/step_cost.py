"""What one engine step costs, by how many sequences it decodes and how many prompt tokens
it prefills: the numbers behind the real-time/batch trade (BENCHMARKS.md, hybrid).

vLLM's offline `LLM` on the default chat model with Freight's engine settings, in this
process. Decode: N sequences of 32 random prompt tokens generate 64 tokens and then 4
(`ignore_eos`); the difference over the 60 extra steps is the time of one step with N
sequences in it. Prefill: 64 distinct prompts of 256 tokens with `max_tokens` 1, per
prompt token. From these, for each N: batch decode tokens/s, and how long a 16-token
real-time answer takes beside N - 1 batch sequences (17 steps) against the engine alone.

Every size is measured --repeats times, sizes in a fresh seeded random order per repeat;
each raw measurement is stored and the table shows medians and min-max.

    python -m benchmarks.step_cost [--sizes 1,16,64,256] [--repeats 3]
        [--compiled] [--quick] [--name step_cost]
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from benchmarks import harness, systems
from benchmarks.vllm_offline import offline_llm

SIZES = "1,16,64,256"
QUICK_SIZES = "1,16"


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


def measure(args: Any) -> dict[str, Any]:
    engine = systems.engine_settings(args)
    # every prompt token is computed
    llm = offline_llm(
        str(systems.model_dir(engine)), engine.model_dump(), enable_prefix_caching=False
    )
    rng = random.Random(0)
    timed(llm, prompts(8, 32, rng), 8)  # warm-up
    sizes = [int(x) for x in (args.sizes or (QUICK_SIZES if args.quick else SIZES)).split(",")]
    raw = []
    for repeat in range(args.repeats):
        for size in harness.order([str(n) for n in sizes], args.seed, repeat, key="step_cost"):
            long = timed(llm, prompts(int(size), 32, rng), 64)
            short = timed(llm, prompts(int(size), 32, rng), 4)
            step_ms = (long - short) / 60 * 1000
            raw.append({"repeat": repeat, "sequences": int(size), "step_ms": step_ms})
            print(f"r{repeat + 1} {size} sequences: {step_ms:.1f} ms per step", file=sys.stderr)
    prefill = []
    for repeat in range(args.repeats):
        seconds = timed(llm, prompts(64, 256, rng), 1)
        prefill.append({"repeat": repeat, "ms_per_token": seconds / (64 * 256) * 1000})
    decode = []
    for num in sizes:
        steps = harness.spread(r["step_ms"] for r in raw if r["sequences"] == num)
        assert steps is not None
        decode.append(
            {
                "sequences": num,
                "step_ms": steps,
                "decode_tok_s": num / (steps["median"] / 1000),
            }
        )
    alone = decode[0]["step_ms"]["median"]
    for row in decode:
        row["realtime_x_alone"] = row["step_ms"]["median"] / alone
        row["answer_16_tokens_s"] = 17 * row["step_ms"]["median"] / 1000
    return {
        "raw": raw,
        "decode": decode,
        "prefill": prefill,
        "prefill_ms_per_token": harness.spread(p["ms_per_token"] for p in prefill),
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "step_cost")
    systems.add_engine_arguments(parser)
    parser.add_argument("--sizes", default=None, help=f"sequences per step (default {SIZES})")
    args = harness.parse(parser, argv)
    run = harness.Run("step_cost", args, argv)
    flags = systems.recorded_flags(systems.engine_settings(args))
    run.engine = {**flags, "enable_prefix_caching": False, "scheduling_policy": "fcfs"}
    result = measure(args)
    run.write({"settings": harness.settings(args), **result})


if __name__ == "__main__":
    main()
