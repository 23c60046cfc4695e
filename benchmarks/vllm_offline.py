"""Raw vLLM baseline kept warm: `LLM.chat` (offline, in-process) on a batch file's bodies.

Run as a subprocess by the overhead benchmark, so its engine is separate from
Freight's. It builds the `LLM` once with Freight's engine settings, runs the same
warm-up file Freight's engine runs, then serves files: for each line
`{"input": IN, "output": OUT}` on stdin it empties the prefix cache, times `LLM.chat`
over IN's chat bodies, writes the results to OUT in the batch output line shape (so
they are counted and compared like every other system's), and writes one JSON line
`{"seconds": ..., "cached_prompt_tokens": ...}` to file descriptor RESULT_FD:

    python -m benchmarks.vllm_offline RESULT_FD MODEL_DIR ENGINE_JSON WARM.jsonl
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


def _bodies(path: str) -> tuple[list[str], list[dict[str, Any]]]:
    ids, bodies = [], []
    with open(path) as fh:
        for raw in fh:
            if raw.strip():
                line = json.loads(raw)
                ids.append(line["custom_id"])
                bodies.append(line["body"])
    return ids, bodies


def chat(llm: Any, path: str) -> tuple[float, list[str], list[Any]]:
    """One timed `LLM.chat` over the file's bodies: (seconds, custom ids, outputs)."""
    from vllm import SamplingParams

    ids, bodies = _bodies(path)
    params = [
        SamplingParams(max_tokens=b["max_tokens"], temperature=b.get("temperature", 1.0))
        for b in bodies
    ]
    started = time.perf_counter()
    outputs = llm.chat([b["messages"] for b in bodies], params, use_tqdm=False)
    return time.perf_counter() - started, ids, outputs


def write_output(path: str, ids: list[str], outputs: list[Any]) -> int:
    """The outputs as batch output lines; returns the cached prompt tokens."""
    cached = 0
    with open(path, "w") as fh:
        for custom_id, out in zip(ids, outputs, strict=True):
            cached += out.num_cached_tokens or 0
            usage = {
                "prompt_tokens": len(out.prompt_token_ids or []),
                "completion_tokens": len(out.outputs[0].token_ids),
            }
            body = {"choices": [{"message": {"content": out.outputs[0].text}}], "usage": usage}
            response = {"status_code": 200, "body": body}
            fh.write(json.dumps({"custom_id": custom_id, "response": response}) + "\n")
    return cached


def main(result_fd: int, model_dir: str, engine_json: str, warm_path: str) -> None:
    llm = offline_llm(model_dir, json.loads(engine_json))
    chat(llm, warm_path)
    with os.fdopen(result_fd, "w", buffering=1) as results:
        results.write(json.dumps({"ready": True}) + "\n")
        for raw in sys.stdin:
            job = json.loads(raw)
            llm.reset_prefix_cache()
            seconds, ids, outputs = chat(llm, job["input"])
            cached = write_output(job["output"], ids, outputs)
            results.write(json.dumps({"seconds": seconds, "cached_prompt_tokens": cached}) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:5])
