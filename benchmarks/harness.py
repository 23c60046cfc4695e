"""The systems the benchmarks compare, each run on a batch input file and timed alike.

Every timing excludes engine start-up (vLLM's and Freight's alike) and includes
everything after: reading the file, validation, scheduling, generation, writing results.
Freight's paths share one warm engine in this process; the vLLM baselines run as
subprocesses with the same engine arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import uvicorn
from rich.console import Console

from benchmarks import workloads
from freight import config, offline
from freight.api.app import create_app
from freight.engines.pool import EnginePool
from freight.models import Registry
from freight.protocol import endpoints
from freight.service import Service

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
REPO = Path(__file__).resolve().parent.parent
quiet = Console(quiet=True)


@dataclass
class Sample:
    seconds: float
    output_tokens: int
    num_requests: int

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def output_tokens(path: Path) -> tuple[int, int]:
    """(generated tokens, successful lines) of a batch output file."""
    total = num = 0
    for raw in path.read_text().splitlines():
        response = json.loads(raw)["response"]
        if response and response["status_code"] == 200:
            total += response["body"]["usage"]["completion_tokens"]
            num += 1
    return total, num


@dataclass
class Bench:
    """One warm Freight engine, an in-process API server on it, and the vLLM baselines."""

    tmp: Path
    settings: config.Settings = field(init=False)
    pool: EnginePool = field(init=False)
    model_dir: Path = field(init=False)
    client: openai.AsyncOpenAI = field(init=False)
    _server: uvicorn.Server = field(init=False)
    _serving: asyncio.Task[None] = field(init=False)

    async def start(self, **overrides: Any) -> None:
        self.settings = config.Settings(
            home=self.tmp / "home", model_cache=REPO / ".freight" / "models", **overrides
        )
        registry = Registry(self.settings)
        self.model_dir = registry.weights_dir(registry.get(workloads.MODEL))
        self.pool = EnginePool(self.settings, registry)
        await self.pool.get(workloads.MODEL)
        warm = workloads.write(workloads.mixed(32, seed=99), self.tmp / "warm.jsonl")
        await self.engine_direct(warm)
        svc = Service(self.settings, engines=self.pool)
        port = 8700 + os.getpid() % 1000
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
        )
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.05)
        self.client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="b")

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._serving
        await self.pool.shutdown()

    async def cold(self) -> None:
        """Empty the warm engine's prefix cache, so no system reuses the prompts of the one
        before it (the vLLM baselines warm a fresh engine, then empty its cache alike)."""
        engine = await self.pool.get(workloads.MODEL)
        await engine.reset_prefix_cache()  # type: ignore[attr-defined]

    # --- Freight ------------------------------------------------------------------

    async def freight_run(
        self, input_path: Path, scheduler: dict[str, bool] | None = None
    ) -> Sample:
        """`freight run`'s code path, on the warm engine (`scheduler`: settings overrides)."""
        out = input_path.with_suffix(".run.jsonl")
        settings = self.settings
        if scheduler:
            policy = self.settings.scheduler.model_copy(update=scheduler)
            settings = self.settings.model_copy(update={"scheduler": policy})
        started = time.perf_counter()
        code = await offline.run_file_async(
            settings, input_path, out, None, None, console=quiet, engines=self.pool
        )
        seconds = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"freight run exited {code}")
        return Sample(seconds, *output_tokens(out))

    async def freight_api(self, input_path: Path) -> Sample:
        """The HTTP API with the official SDK: upload, create, poll, download."""
        started = time.perf_counter()
        uploaded = await self.client.files.create(file=input_path, purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            await asyncio.sleep(0.05)
            batch = await self.client.batches.retrieve(batch.id)
        if batch.status != "completed" or not batch.output_file_id:
            raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
        out = input_path.with_suffix(".api.jsonl")
        out.write_bytes((await self.client.files.content(batch.output_file_id)).read())
        seconds = time.perf_counter() - started
        return Sample(seconds, *output_tokens(out))

    async def engine_direct(
        self, input_path: Path, *, one_at_a_time: bool = False, limit: int | None = None
    ) -> Sample:
        """Requests straight into the warm engine, all at once or one after another."""
        engine = await self.pool.get(workloads.MODEL)
        endpoint = endpoints.ENDPOINTS["/v1/chat/completions"]
        lines = input_path.read_text().splitlines()[:limit]
        bodies = [endpoint.request_model.model_validate(json.loads(x)["body"]) for x in lines]
        work = [
            endpoint.to_generations(body, f"direct-{time.time_ns()}-{i}")[0]
            for i, body in enumerate(bodies)
        ]
        started = time.perf_counter()
        if one_at_a_time:
            generations = [await engine.generate(w) for w in work]
        else:
            generations = list(await asyncio.gather(*(engine.generate(w) for w in work)))
        seconds = time.perf_counter() - started
        return Sample(seconds, sum(g.num_output_tokens for g in generations), len(work))

    # --- vLLM ---------------------------------------------------------------------

    def _engine_flags(self) -> list[str]:
        e = self.settings.engine
        flags = [
            "--model",
            str(self.model_dir),
            "--served-model-name",
            workloads.MODEL,
            "--dtype",
            e.dtype,
            "--max-model-len",
            str(e.max_model_len),
            "--max-num-seqs",
            str(e.max_num_seqs),
            "--max-num-batched-tokens",
            str(e.max_num_batched_tokens),
            "--seed",
            str(e.seed),
        ]
        flags.append(
            "--enable-prefix-caching" if e.enable_prefix_caching else "--no-enable-prefix-caching"
        )
        if e.enforce_eager:
            flags.append("--enforce-eager")
        return flags

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "VLLM_USE_AOT_COMPILE": "0",
            "VLLM_CPU_KVCACHE_SPACE": f"{self.settings.engine.kv_cache_gib:g}",
        }

    def vllm_run_batch(self, input_path: Path) -> Sample:
        """vLLM's own run-batch (its code, our clock around `run_batch()`)."""
        out = input_path.with_suffix(".vllm-run-batch.jsonl")
        timing = input_path.with_suffix(".vllm-run-batch.timing.json")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.vllm_run_batch",
                str(timing),
                str(self.tmp / "warm.jsonl"),
                "-i",
                str(input_path),
                "-o",
                str(out),
                *self._engine_flags(),
            ],
            env=self._env(),
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        return Sample(json.loads(timing.read_text())["seconds"], *output_tokens(out))

    def vllm_offline(self, input_path: Path) -> Sample:
        """vLLM's offline `LLM.chat` on the file's chat bodies."""
        result_path = input_path.with_suffix(".vllm-offline.json")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.vllm_offline",
                str(self.model_dir),
                str(input_path),
                self.settings.engine.model_dump_json(),
                str(result_path),
            ],
            env=self._env(),
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        result = json.loads(result_path.read_text())
        return Sample(result["seconds"], result["output_tokens"], len(result["texts"]))


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                cpu = raw.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores"
