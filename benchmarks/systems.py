"""The systems the steady-throughput benchmarks compare, each run on a batch file alike.

Every timing here excludes engine start-up (vLLM's and Freight's alike) and includes
everything after it: reading the file, validation, scheduling, generation, writing
results. Freight's paths share one warm engine in this process; the vLLM baselines
run as warm subprocesses (benchmarks/vllm_run_batch.py, vllm_offline.py) with the same
engine flags, each having run the same warm-up file. Before every sample the prefix
cache of the engine about to run is emptied, so no system reuses the prompts of the
one before it.

Each measurement returns a raw `harness.Sample` (seconds, requests, prompt tokens,
output tokens delivered in result lines and computed by the engine, peak RSS of the
system's process tree) and the result texts by custom_id, for the agreement check.
The wall-time view (processes started as a user starts them) is benchmarks/processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import openai
import uvicorn
from rich.console import Console

from benchmarks import harness, workloads
from freight import config
from freight.app import create_app
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.protocol import endpoints
from freight.service import offline
from freight.service.runtime import Service

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
MODEL_CACHE = harness.REPO / ".freight" / "models"
quiet = Console(quiet=True)
Measured = tuple[harness.Sample, harness.Delivered]


# --- the same engine flags on every side ---------------------------------------------


# The sizes every recorded CPU figure ran with (BENCHMARKS.md); Freight itself now leaves
# them to vLLM's per-device choice, so they are fixed here to keep runs comparable.
ENGINE_SIZES: dict[str, Any] = {
    "max_model_len": 2048,
    "max_num_seqs": 256,
    "max_num_batched_tokens": 4096,
    "kv_cache_gib": 2.0,
}


def engine_settings(args: Any) -> config.EngineSettings:
    """The recorded sizes, with the benchmark's --dtype and --eager/--compiled."""
    return config.EngineSettings(dtype=args.dtype, enforce_eager=args.eager, **ENGINE_SIZES)  # type: ignore[call-arg]


def add_engine_arguments(parser: Any) -> None:
    """--dtype and --eager / --compiled, shared by every benchmark that runs vLLM."""
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--eager",
        dest="eager",
        action="store_true",
        default=True,
        help="skip torch.compile on every side (default: starts in seconds)",
    )
    group.add_argument(
        "--compiled", dest="eager", action="store_false", help="torch.compile on every side"
    )


def recorded_flags(engine: config.EngineSettings) -> dict[str, Any]:
    """The environment block's engine entry: the same for Freight and vLLM."""
    return harness.engine_flags(
        engine.model_dump(),
        scheduling_policy="priority",
        structured_outputs_backend=engine.structured_outputs_backend,
    )


def model_dir(engine: config.EngineSettings) -> Path:
    settings = config.Settings(model_cache=MODEL_CACHE, engine=engine)
    registry = Registry(settings)
    weights: Path = registry.weights_dir(registry.get(workloads.MODEL))
    return weights


def vllm_flags(engine: config.EngineSettings, weights: Path) -> list[str]:
    """vLLM command-line flags for the engine Freight builds (engines/vllm_engine.py): same
    model, dtype, lengths, batch limits, seed, prefix caching, eager mode and priority
    scheduling. `--enable-prompt-tokens-details` only adds cached-token counts to each
    result line (so computed prompt tokens are known); `--disable-log-stats` as Freight."""
    flags = [
        "--model",
        str(weights),
        "--served-model-name",
        workloads.MODEL,
        "--dtype",
        engine.dtype,
        "--max-model-len",
        str(engine.max_model_len),
        "--max-num-seqs",
        str(engine.max_num_seqs),
        "--max-num-batched-tokens",
        str(engine.max_num_batched_tokens),
        "--seed",
        str(engine.seed),
        "--scheduling-policy",
        "priority",
        "--disable-log-stats",
        "--enable-prompt-tokens-details",
    ]
    flags.append(
        "--enable-prefix-caching" if engine.enable_prefix_caching else "--no-enable-prefix-caching"
    )
    if engine.enforce_eager:
        flags.append("--enforce-eager")
    return flags


def vllm_env(engine: config.EngineSettings) -> dict[str, str]:
    """The environment Freight's engine sets for vLLM (engines/vllm_engine.py), for vLLM alone."""
    return {
        **os.environ,
        "VLLM_USE_AOT_COMPILE": "0",
        "VLLM_CPU_KVCACHE_SPACE": f"{engine.kv_cache_gib:g}",
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }


# --- warm vLLM baselines in subprocesses ---------------------------------------------


class WarmProcess:
    """A baseline subprocess that serves files one at a time over a pipe protocol:
    a JSON job line on its stdin, a JSON result line on a file descriptor of its own."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        read_fd, write_fd = os.pipe()
        self.log = log
        with open(log, "w") as log_fh:
            self.proc = subprocess.Popen(
                [argv[0], *argv[1:3], str(write_fd), *argv[3:]],
                env=env,
                cwd=harness.REPO,
                stdin=subprocess.PIPE,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                text=True,
            )
        os.close(write_fd)
        self._results: IO[str] = os.fdopen(read_fd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> dict[str, Any]:
        raw = self._results.readline()
        if not raw:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"{self.log.name}: the baseline process ended:\n{tail}")
        result: dict[str, Any] = json.loads(raw)
        return result

    def wait_ready(self) -> None:
        self._read()

    def run(self, input_path: Path, output: Path) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"input": str(input_path), "output": str(output)}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._results.close()


# --- the bench -----------------------------------------------------------------------


@dataclass
class Bench:
    """One warm Freight engine with an in-process API server, and the warm baselines."""

    tmp: Path
    engine_config: config.EngineSettings
    settings: config.Settings = field(init=False)
    pool: EnginePool = field(init=False)
    weights: Path = field(init=False)
    warm_path: Path = field(init=False)
    client: openai.AsyncOpenAI = field(init=False)
    baselines: dict[str, WarmProcess] = field(default_factory=dict)
    _server: uvicorn.Server = field(init=False)
    _serving: asyncio.Task[None] = field(init=False)

    async def start(self, **overrides: Any) -> None:
        """Start Freight's engine, run the warm-up file through it, serve the API."""
        # The result cache off: every repeat of a file must run on the engine.
        overrides.setdefault("cache", config.CacheSettings(enabled=False))  # type: ignore[call-arg]
        self.settings = config.Settings(
            home=self.tmp / "home", model_cache=MODEL_CACHE, engine=self.engine_config, **overrides
        )
        registry = Registry(self.settings)
        self.weights = registry.weights_dir(registry.get(workloads.MODEL))
        self.pool = EnginePool(self.settings, registry)
        await self.pool.get(workloads.MODEL)
        self.warm_path = workloads.write(workloads.mixed(32, seed=99), self.tmp / "warm.jsonl")
        await self.engine_direct(self.warm_path, repeat=-1, position=0)
        svc = Service(self.settings, engines=self.pool)
        port = harness.free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning")
        )
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.05)
        self.client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", timeout=3600
        )

    async def stop(self) -> None:
        for process in self.baselines.values():
            await asyncio.to_thread(process.close)
        self._server.should_exit = True
        await self._serving
        await self.pool.shutdown()

    async def cold(self) -> None:
        """Empty the warm engine's prefix cache before a sample (the baselines empty
        their own before each of theirs)."""
        engine = await self.pool.get(workloads.MODEL)
        await engine.reset_prefix_cache()  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def _freight_measured(self) -> Iterator[dict[str, Any]]:
        """Peak RSS of this process tree without the baselines, and what the engine
        computed meanwhile (its meter), into the yielded dict."""
        before = self._meter()
        measured: dict[str, Any] = {"load1": harness.load1()}
        exclude = [p.pid for p in self.baselines.values()]
        with harness.PeakRss(os.getpid(), exclude) as rss:
            yield measured
        after = self._meter()
        measured["peak_rss_mb"] = rss.peak_mb
        measured["output_tokens_computed"] = after[0] - before[0]
        measured["prompt_tokens_computed"] = after[1] - before[1]

    def _meter(self) -> tuple[int, int]:
        """(output tokens, uncached prompt tokens) the engine has generated so far."""
        output = prompt = 0
        for (model, _kind), usage in self.pool.meter.totals.items():
            if model == workloads.MODEL:
                output += usage.output_tokens
                prompt += usage.input_tokens - usage.cached_tokens
        return output, prompt

    # --- Freight ------------------------------------------------------------------

    async def freight_run(
        self,
        input_path: Path,
        *,
        repeat: int,
        position: int,
        system: str = "freight",
        scheduler: dict[str, bool] | None = None,
    ) -> Measured:
        """`freight run`'s code path, on the warm engine (`scheduler`: settings overrides)."""
        out = input_path.with_suffix(f".{system.replace(' ', '_')}.jsonl")
        settings = self.settings
        if scheduler:
            policy = self.settings.scheduler.model_copy(update=scheduler)
            settings = self.settings.model_copy(update={"scheduler": policy})
        with self._freight_measured() as measured:
            started = time.perf_counter()
            code = await offline.run_file_async(
                settings, input_path, out, None, None, console=quiet, engines=self.pool
            )
            seconds = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"freight run exited {code}")
        return harness.sample_from_output(system, repeat, position, seconds, out, **measured)

    async def freight_api(self, input_path: Path, *, repeat: int, position: int) -> Measured:
        """The HTTP API with the official SDK: upload, create, poll, download."""
        out = input_path.with_suffix(".api.jsonl")
        with self._freight_measured() as measured:
            started = time.perf_counter()
            await submit(self.client, input_path, out)
            seconds = time.perf_counter() - started
        return harness.sample_from_output("api", repeat, position, seconds, out, **measured)

    async def engine_direct(
        self,
        input_path: Path,
        *,
        repeat: int,
        position: int,
        one_at_a_time: bool = False,
        limit: int | None = None,
        system: str = "engine",
    ) -> harness.Sample:
        """Requests straight into the warm engine, all at once or one after another."""
        engine = await self.pool.get(workloads.MODEL)
        endpoint = endpoints.ENDPOINTS["/v1/chat/completions"]
        lines = input_path.read_text().splitlines()[:limit]
        bodies = [endpoint.request_model.model_validate(json.loads(x)["body"]) for x in lines]
        work = [
            endpoint.to_generations(body, f"direct-{time.time_ns()}-{i}")[0]
            for i, body in enumerate(bodies)
        ]
        with self._freight_measured() as measured:
            started = time.perf_counter()
            if one_at_a_time:
                generations = [await engine.generate(w) for w in work]
            else:
                generations = list(await asyncio.gather(*(engine.generate(w) for w in work)))
            seconds = time.perf_counter() - started
        return harness.Sample(
            system=system,
            repeat=repeat,
            position=position,
            seconds=seconds,
            num_requests=len(work),
            prompt_tokens=sum(g.num_prompt_tokens for g in generations),
            output_tokens_delivered=sum(g.num_output_tokens for g in generations),
            **measured,
        )

    # --- vLLM ---------------------------------------------------------------------

    async def start_run_batch(self) -> None:
        """vLLM run-batch's engine in a warm subprocess (benchmarks/vllm_run_batch.py)."""
        argv = [
            sys.executable,
            "-m",
            "benchmarks.vllm_run_batch",
            str(self.warm_path),
            "-i",
            str(self.warm_path),
            "-o",
            str(self.tmp / "unused.jsonl"),
            *vllm_flags(self.engine_config, self.weights),
        ]
        await self._start_baseline("run-batch", argv)

    async def start_offline(self) -> None:
        """vLLM's offline `LLM` in a warm subprocess (benchmarks/vllm_offline.py)."""
        argv = [
            sys.executable,
            "-m",
            "benchmarks.vllm_offline",
            str(self.weights),
            self.engine_config.model_dump_json(),
            str(self.warm_path),
        ]
        await self._start_baseline("vllm-offline", argv)

    async def _start_baseline(self, name: str, argv: list[str]) -> None:
        process = WarmProcess(argv, vllm_env(self.engine_config), self.tmp / f"{name}.log")
        self.baselines[name] = process
        await asyncio.to_thread(process.wait_ready)

    async def baseline(
        self, name: str, input_path: Path, *, repeat: int, position: int
    ) -> Measured:
        """One file through a warm baseline; delivered counts from its output file."""
        process = self.baselines[name]
        out = input_path.with_suffix(f".{name}.jsonl")
        load1 = harness.load1()
        with harness.PeakRss(process.pid) as rss:
            timing = await asyncio.to_thread(process.run, input_path, out)
        sample, delivered = harness.sample_from_output(
            name, repeat, position, timing["seconds"], out, load1=load1, peak_rss_mb=rss.peak_mb
        )
        # vLLM computes every line it is given: nothing is shared between requests but
        # the prefix cache, which the result lines report.
        sample.output_tokens_computed = delivered.output_tokens
        sample.prompt_tokens_computed = delivered.prompt_tokens - (
            timing.get("cached_prompt_tokens") or delivered.cached_prompt_tokens
        )
        return sample, delivered


async def submit(client: openai.AsyncOpenAI, input_path: Path, out: Path) -> None:
    """Upload, create a batch, poll until it ends, download the output to `out`."""
    uploaded = await client.files.create(file=input_path, purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.05)
        batch = await client.batches.retrieve(batch.id)
    if batch.status != "completed" or not batch.output_file_id:
        raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
    out.write_bytes((await client.files.content(batch.output_file_id)).read())
