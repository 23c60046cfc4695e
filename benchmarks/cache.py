"""Work avoided: a labeling batch, then the same file with 5% of its rows changed.

A real `freight serve` process (the API, the worker and the default model's real vLLM
engine on loopback; engine flags as the tests run them, fp32 so that a fresh run is
comparable), driven by the official `openai` SDK:

  warm-up  a small labeling batch of other rows, so that the deployment has a history
           (output tokens per request, metered throughput) for the estimate to go on;
  first    N labeling requests (temperature 0): estimated, then run. The estimate's
           expected duration and output tokens against what the run took (the error);
  second   the same file with 5% of its rows changed (same custom_ids, other reviews):
           estimated (its `cache_hits` against the rows left unchanged, which the first
           run answered), then run. Its time against the first's; every unchanged line's
           response body against the first run's line for that custom_id (equal, byte
           for byte), and the served-from-cache counter of /metrics against the hits;
  fresh    the changed rows alone with `"cache": false` (every request on the engine):
           each of the second run's changed lines against this fresh run's answer.

    python -m benchmarks.cache [--requests 2000] [--changed 0.05] [--quick] [--name cache]

Targets (issue 22): the second run takes at most 0.1 x the first's time; every line of
it equals the first (or a fresh) run's for its custom_id; the estimate for the second file
says exactly how many requests the cache answers. --quick: 100 requests, 16 of warm-up.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks import harness, workloads
from benchmarks.control_plane import freight_env
from freight import config

REQUESTS = 2000
QUICK_REQUESTS = 100
WARMUP = 64
QUICK_WARMUP = 16
MAX_TOKENS = 8
TARGET_RATIO = 0.1
LABELS = "positive, negative or neutral"
# The engine as the tests run it (tests/conftest.py): fp32, so that a fresh run of a
# request gives the answer the first run gave (design.md, Determinism).
ENGINE_ENV = {
    "FREIGHT_ENGINE__DTYPE": "float32",
    "FREIGHT_ENGINE__ENFORCE_EAGER": "true",
    "FREIGHT_ENGINE__MAX_MODEL_LEN": "2048",
    "FREIGHT_ENGINE__MAX_NUM_SEQS": "256",
    "FREIGHT_ENGINE__MAX_NUM_BATCHED_TOKENS": "4096",
    "FREIGHT_ENGINE__KV_CACHE_GIB": "2",
    "FREIGHT_MODEL_CACHE": str(harness.REPO / ".freight" / "models"),
    "VLLM_LOGGING_LEVEL": "WARNING",
}
TERMINAL = ("completed", "failed", "expired", "cancelled")


def review(rng: random.Random) -> str:
    return " ".join(rng.choice(workloads.WORDS) for _ in range(rng.randint(12, 40)))


def label_line(custom_id: str, text: str) -> dict[str, Any]:
    prompt = f"Label this review {LABELS}. Answer with one word.\n\nReview: {text}"
    return workloads.line(custom_id, [{"role": "user", "content": prompt}], MAX_TOKENS)


def labeling(num: int, seed: int, prefix: str = "row") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [label_line(f"{prefix}-{i}", review(rng)) for i in range(num)]


def changed(
    lines: list[dict[str, Any]], share: float, seed: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The file with `share` of its rows given another review (same custom_ids)."""
    rng = random.Random(f"changed:{seed}")
    picked = sorted(rng.sample(range(len(lines)), round(len(lines) * share)))
    out = [dict(line) for line in lines]
    for i in picked:
        out[i] = label_line(lines[i]["custom_id"], "changed: " + review(rng))
    return out, [lines[i]["custom_id"] for i in picked]


class Server:
    """`freight serve` with the default model preloaded, in its own process group."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = harness.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**freight_env(home), **ENGINE_ENV}
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "freight.cli.main", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.client = openai.OpenAI(base_url=f"{self.base}/v1", api_key="bench", timeout=3600)

    def wait_ready(self, model: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"freight serve exited {self.proc.returncode}")
            try:
                health = httpx.get(f"{self.base}/health", timeout=2).json()
                if model in health.get("engines", []):
                    return
                if model in health.get("engine_failures", {}):
                    raise RuntimeError(f"the engine failed: {health['engine_failures']}")
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the engine did not start in time")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def estimate(self, file_id: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.base}/v1/batches/estimate", json={"input_file_id": file_id}, timeout=600
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def served_from_cache(self) -> int:
        text = httpx.get(f"{self.base}/metrics", timeout=30).text
        found = re.search(r"^freight_results_served_from_cache_total (\S+)$", text, re.M)
        return int(float(found[1])) if found else 0

    def upload(self, path: Path) -> str:
        return str(self.client.files.create(file=path, purpose="batch").id)

    def run(self, file_id: str, **extra: Any) -> tuple[float, Any, dict[str, dict[str, Any]]]:
        """Create a batch of the uploaded file, wait for it: (seconds, batch, lines by id)."""
        started = time.perf_counter()
        batch = self.client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            extra_body=extra or None,
        )
        while batch.status not in TERMINAL:
            time.sleep(0.05)
            batch = self.client.batches.retrieve(batch.id)
        seconds = time.perf_counter() - started
        if batch.status != "completed" or batch.output_file_id is None:
            raise RuntimeError(f"batch {batch.id} ended {batch.status}")
        text = self.client.files.content(batch.output_file_id).text
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        return seconds, batch, {x["custom_id"]: x for x in lines}


def wait_for_rate(server: Server, file_id: str, timeout: float = 90) -> dict[str, Any]:
    """The estimate, once the warm-up's engine time is recorded (every 10 s)."""
    deadline = time.monotonic() + timeout
    estimate = server.estimate(file_id)
    while estimate["duration"]["tokens_per_second"] is None and time.monotonic() < deadline:
        time.sleep(1)
        estimate = server.estimate(file_id)
    return estimate


def answer(line: dict[str, Any]) -> Any:
    """What the model said in a line: its choices' messages and finish reasons."""
    body = line["response"]["body"] if line.get("response") else None
    if body is None:
        return None
    return [(c["message"].get("content"), c["finish_reason"]) for c in body["choices"]]


def factor(expected: float | None, actual: float) -> float | None:
    """max(expected/actual, actual/expected): 1.0 is exact."""
    if not expected or not actual:
        return None
    return round(max(expected / actual, actual / expected), 3)


def measure(tmp: Path, num: int, num_warmup: int, share: float, seed: int) -> dict[str, Any]:
    home = tmp / "home"
    home.mkdir()
    server = Server(home, tmp / "serve.log")
    try:
        started = time.perf_counter()
        server.wait_ready(workloads.MODEL)
        engine_start_s = time.perf_counter() - started
        warm = workloads.write(labeling(num_warmup, seed + 1000, "warm"), tmp / "warm.jsonl")
        server.run(server.upload(warm))

        first_lines = labeling(num, seed)
        first_id = server.upload(workloads.write(first_lines, tmp / "first.jsonl"))
        first_estimate = wait_for_rate(server, first_id)
        first_s, first_batch, first_out = server.run(first_id)
        usage = first_batch.usage
        actual_output = usage.output_tokens if usage else 0
        expected_s = first_estimate["duration"]["seconds_for_this_batch"]
        expected_output = first_estimate["output_tokens"]["expected"]

        second_lines, changed_ids = changed(first_lines, share, seed)
        second_id = server.upload(workloads.write(second_lines, tmp / "second.jsonl"))
        second_estimate = server.estimate(second_id)
        changed_set = set(changed_ids)
        succeeded_first = {k for k, v in first_out.items() if answer(v) is not None}
        expected_hits = sum(
            1
            for x in second_lines
            if x["custom_id"] not in changed_set and x["custom_id"] in succeeded_first
        )
        served_before = server.served_from_cache()
        second_s, second_batch, second_out = server.run(second_id)
        served = server.served_from_cache() - served_before

        unchanged_equal = sum(
            1
            for cid in first_out
            if cid not in changed_set
            and second_out.get(cid, {}).get("response", {}).get("body")
            == first_out[cid].get("response", {}).get("body")
        )
        fresh_path = workloads.write(
            [x for x in second_lines if x["custom_id"] in changed_set], tmp / "fresh.jsonl"
        )
        fresh_s, _, fresh_out = server.run(server.upload(fresh_path), cache=False)
        changed_equal = sum(
            1
            for cid in changed_ids
            if cid in fresh_out and answer(second_out[cid]) == answer(fresh_out[cid])
        )
    finally:
        server.stop()
    num_unchanged = num - len(changed_ids)
    ratio = second_s / first_s
    return {
        "engine_start_s": round(engine_start_s, 1),
        "requests": num,
        "warmup_requests": num_warmup,
        "changed_rows": len(changed_ids),
        "first": {
            "seconds": round(first_s, 2),
            "output_tokens": actual_output,
            "requests_completed": first_batch.request_counts.completed,
            "estimate": {
                "expected_seconds_for_this_batch": expected_s,
                "expected_output_tokens": expected_output,
                "output_tokens_basis": first_estimate["output_tokens"]["expected_basis"],
                "tokens_per_second": first_estimate["duration"]["tokens_per_second"],
                "duration_factor": factor(expected_s, first_s),
                "output_tokens_factor": factor(expected_output, actual_output),
                "cache_hits": first_estimate["cache_hits"],
            },
        },
        "second": {
            "seconds": round(second_s, 2),
            "ratio_to_first": round(ratio, 4),
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio <= TARGET_RATIO,
            "requests_completed": second_batch.request_counts.completed,
            "estimate_cache_hits": second_estimate["cache_hits"],
            "expected_cache_hits": expected_hits,
            "estimate_exact": second_estimate["cache_hits"] == expected_hits,
            "served_from_cache_metric": served,
            "unchanged_lines": num_unchanged,
            "unchanged_lines_equal_to_first": unchanged_equal,
            "changed_lines_equal_to_fresh": changed_equal,
            "all_lines_equal": unchanged_equal == num_unchanged
            and changed_equal == len(changed_ids),
        },
        "fresh": {"seconds": round(fresh_s, 2), "requests": len(changed_ids)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = harness.arguments(__doc__, "cache", repeats=1)
    parser.add_argument("--requests", type=int, default=None, help="default 2,000")
    parser.add_argument("--warmup", type=int, default=None, help="default 64")
    parser.add_argument("--changed", type=float, default=0.05, help="share of rows changed")
    args = harness.parse(parser, argv)
    num = args.requests or (QUICK_REQUESTS if args.quick else REQUESTS)
    num_warmup = args.warmup or (QUICK_WARMUP if args.quick else WARMUP)
    run = harness.Run("cache", args, argv)
    # the flags ENGINE_ENV gives the server, the rest at Freight's defaults
    engine = config.EngineSettings(  # type: ignore[call-arg]
        dtype="float32",
        enforce_eager=True,
        max_num_seqs=256,
        max_num_batched_tokens=4096,
        kv_cache_gib=2.0,
        max_model_len=2048,
    )
    run.engine = harness.engine_flags(
        engine.model_dump(), model=workloads.MODEL, max_tokens=MAX_TOKENS
    )
    with harness.scratch("freight-cache-") as tmp:
        result = measure(tmp, num, num_warmup, args.changed, args.seed)
    print(json.dumps(result, indent=1))
    run.write({"settings": harness.settings(args), **result})


if __name__ == "__main__":
    main()
