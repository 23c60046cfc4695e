"""The wall-time view: each system started the way a user starts it, timed as they wait.

  run-batch      `python -m vllm.entrypoints.openai.run_batch -i IN -o OUT --model ...`
                 as a process: engine start-up included
  freight-run    `freight run IN -o OUT` as a process: engine start-up included
  freight-serve  IN submitted with the official `openai` SDK to a `freight serve` that
                 is already running (the deployment users keep): upload, create, poll,
                 download; its start-up happened before, once

Both processes get the same engine flags (systems.vllm_flags for vLLM, the same values
in a freight.toml for Freight). Measured per sample: wall seconds from the command's
start to its exit (or, for the SDK, to the downloaded output), seconds until the first
result line could be read, peak RSS of the process tree (engine processes included),
and what the output file holds. Both commands write their output file when the batch
is done and Freight's API offers the output file when the batch completes, so the
first line arrives with the last one on every path; it is measured, not assumed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai

from benchmarks import harness, systems, workloads
from freight import config

Measured = systems.Measured
POLL_S = 0.05


def freight_toml(engine: config.EngineSettings) -> str:
    """A freight.toml that gives Freight exactly these engine flags and the shared model
    cache."""
    lines = [f'model_cache = "{systems.MODEL_CACHE}"', "", "[engine]"]
    for key, value in engine.model_dump().items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    # the result cache off: repeats of a file measure the engine, not the store
    lines += ["", "[cache]", "enabled = false"]
    return "\n".join(lines) + "\n"


def freight_command() -> list[str]:
    """`freight`, the console script next to this Python (what a user types)."""
    script = Path(sys.executable).parent / "freight"
    return [str(script)] if script.exists() else [sys.executable, "-m", "freight.cli.main"]


def freight_env(engine: config.EngineSettings) -> dict[str, str]:
    """This checkout's Freight, with no FREIGHT_* settings leaking in from outside."""
    env = {k: v for k, v in systems.vllm_env(engine).items() if not k.startswith("FREIGHT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(harness.REPO / "src"), str(harness.REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def freight_home(path: Path, engine: config.EngineSettings) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "freight.toml").write_text(freight_toml(engine))
    return path


def first_line_seen(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"\n" in fh.read(1 << 16)
    except FileNotFoundError:
        return False


class Commands:
    """Runs `run-batch` and `freight run` as processes, one sample each call."""

    def __init__(self, tmp: Path, engine: config.EngineSettings, weights: Path) -> None:
        self.tmp = tmp
        self.engine = engine
        self.weights = weights
        self.home = freight_home(tmp / "run-home", engine)

    def argv(self, system: str, input_path: Path, out: Path) -> list[str]:
        if system == "run-batch":
            return [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.run_batch",
                "-i",
                str(input_path),
                "-o",
                str(out),
                *systems.vllm_flags(self.engine, self.weights),
            ]
        return [
            *freight_command(),
            "run",
            str(input_path),
            "-o",
            str(out),
            "--home",
            str(self.home),
        ]

    def env(self, system: str) -> dict[str, str]:
        return systems.vllm_env(self.engine) if system == "run-batch" else freight_env(self.engine)

    def measure(self, system: str, input_path: Path, *, repeat: int, position: int) -> Measured:
        out = input_path.with_suffix(f".{system}.r{repeat}.jsonl")
        log = out.with_suffix(".log")
        load1 = harness.load1()
        first_line_s = None
        with open(log, "w") as log_fh:
            started = time.perf_counter()
            proc = subprocess.Popen(
                self.argv(system, input_path, out),
                env=self.env(system),
                cwd=self.tmp,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
            with harness.PeakRss(proc.pid, sampled=True) as rss:
                while proc.poll() is None:
                    if first_line_s is None and first_line_seen(out):
                        first_line_s = time.perf_counter() - started
                    time.sleep(POLL_S)
            seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{system} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if first_line_s is None and first_line_seen(out):
            first_line_s = seconds
        sample, delivered = harness.sample_from_output(
            system,
            repeat,
            position,
            seconds,
            out,
            load1=load1,
            peak_rss_mb=rss.peak_mb,
            first_line_s=first_line_s,
        )
        if system == "run-batch":  # computes every line; the cache shows in the lines
            sample.output_tokens_computed = delivered.output_tokens
            sample.prompt_tokens_computed = delivered.prompt_tokens - delivered.cached_prompt_tokens
        return sample, delivered


def metric_total(text: str, name: str) -> int:
    """Sum of a Prometheus counter's samples (all labels) in a /metrics page."""
    total = 0.0
    for raw in text.splitlines():
        if raw.startswith((name + "{", name + " ")):
            total += float(raw.rsplit(" ", 1)[1])
    return int(total)


class Serve:
    """A running `freight serve` with the same engine flags, warmed with the same file as
    the other systems; batches go to it with the official SDK."""

    def __init__(self, tmp: Path, engine: config.EngineSettings, warm_path: Path) -> None:
        self.tmp = tmp
        self.engine = engine
        self.warm_path = warm_path
        self.home = freight_home(tmp / "serve-home", engine)
        self.port = harness.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=f"{self.base}/v1", api_key="bench", timeout=3600)
        self.proc: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self, deadline_s: float = 900) -> Iterator[Serve]:
        argv = [*freight_command(), "serve", "--home", str(self.home), "--port", str(self.port)]
        with open(self.home / "serve.log", "w") as log:
            self.proc = subprocess.Popen(
                argv, env=freight_env(self.engine), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_for_engine(deadline_s)
            self.submit(self.warm_path, self.tmp / "serve-warm.out.jsonl")
            yield self
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _wait_for_engine(self, deadline_s: float) -> None:
        """Until /health lists the preloaded model's engine as started."""
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.home / "serve.log").read_text()[-3000:]
                raise RuntimeError(f"freight serve exited {self.proc.returncode}:\n{log}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{self.base}/health", timeout=5).json()
                if workloads.MODEL in health.get("engines", []):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"freight serve's engine did not start in {deadline_s:.0f} s")

    def submit(self, input_path: Path, out: Path) -> None:
        """Upload, create, poll, download: what a user of the API does."""
        uploaded = self.client.files.create(file=input_path, purpose="batch")
        batch = self.client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(POLL_S)
            batch = self.client.batches.retrieve(batch.id)
        if batch.status != "completed" or not batch.output_file_id:
            raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
        out.write_bytes(self.client.files.content(batch.output_file_id).read())

    def _computed(self) -> tuple[int, int]:
        text = httpx.get(f"{self.base}/metrics", timeout=30).text
        output = metric_total(text, "freight_generation_tokens_total")
        prompt = metric_total(text, "freight_prompt_tokens_total") - metric_total(
            text, "freight_cached_prompt_tokens_total"
        )
        return output, prompt

    def measure(self, input_path: Path, *, repeat: int, position: int) -> Measured:
        assert self.proc is not None
        out = input_path.with_suffix(f".freight-serve.r{repeat}.jsonl")
        load1 = harness.load1()
        before = self._computed()
        with harness.PeakRss(self.proc.pid) as rss:
            started = time.perf_counter()
            self.submit(input_path, out)
            seconds = time.perf_counter() - started
        after = self._computed()
        measured: dict[str, Any] = {
            "load1": load1,
            "peak_rss_mb": rss.peak_mb,
            "first_line_s": seconds,  # the output file is offered when the batch completes
            "output_tokens_computed": after[0] - before[0],
            "prompt_tokens_computed": after[1] - before[1],
        }
        return harness.sample_from_output(
            "freight-serve", repeat, position, seconds, out, **measured
        )
