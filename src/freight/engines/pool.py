"""Engines by model name, started on first use and shared by the API and the worker.

A model either generates text (vLLM, echo) or embeds it (sentence-transformers); `get`
hands out the first kind and `get_embedder` the second, so a caller never receives an
engine that cannot do what it asks.

An engine that has died (its process killed, out of memory) is noticed at the next
`get`: it is shut down and a new one started in its place, and every caller waiting
meanwhile gets the new engine. The requests that were inside the dead engine failed with
EngineDied; the worker retries them (worker/dispatcher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import cast

from freight.config import HTTPUpstream, ModelSettings, Settings
from freight.engines import engine_args
from freight.engines.base import EmbeddingEngine, Engine, Task
from freight.engines.echo import EchoEngine
from freight.engines.metering import EngineMeter, MeteredEngine
from freight.engines.registry import ModelSpec, Registry
from freight.errors import ConfigError, EngineUnavailable, InvalidRequest

log = logging.getLogger(__name__)
DEAD_ENGINE_SHUTDOWN_SECONDS = 30.0  # a dead engine's cleanup must not hold up its successor
LOCAL_ENGINES = ("vllm", "embeddings")  # engines that take this machine's memory
START_LOCK = "engine-start.lock"  # in run_dir: one engine starts at a time per home
LOCK_POLL_SECONDS = 0.2


class RealtimeLoad:
    """Real-time requests in the engines now, and when the last one ended.

    The API counts its requests here; the worker reads it to shrink its batch window
    while real-time traffic runs (worker/scheduler.py, `batch_window`). Both live on one
    event loop, so plain counters suffice.
    """

    def __init__(self) -> None:
        self.num_active = 0
        self.last_ended_at: float | None = None  # time.monotonic()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever a real-time request starts (the worker's wake-up)."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.num_active += 1
        for listener in self._listeners:
            listener()
        try:
            yield
        finally:
            self.num_active -= 1
            self.last_ended_at = time.monotonic()

    def seconds_since_last(self, now: float) -> float | None:
        return None if self.last_ended_at is None else now - self.last_ended_at


class EnginePool:
    """Starts each model's engine once, on first use; later callers await the same start."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.realtime = RealtimeLoad()
        self._engines: dict[str, Engine | EmbeddingEngine] = {}
        self._starting: dict[str, asyncio.Task[Engine | EmbeddingEngine]] = {}
        self.failures: dict[str, str] = {}  # model → why its engine last failed to start
        self.meter = EngineMeter()  # every engine handed out is metered (engines/metering.py)
        self.num_restarts: dict[str, int] = {}  # model → engines replaced after dying
        # Engines start one at a time: vLLM sizes its KV cache from the memory it finds
        # free, so two engines measuring at once would both count the same memory.
        self._start_lock = asyncio.Lock()
        self._device: engine_args.Device | None = None  # detected before the first vLLM start
        self._plans: dict[str, engine_args.EnginePlan] = {}  # running vLLM engines' plans

    def add(self, engine: Engine | EmbeddingEngine) -> None:
        """Register an already-started engine (tests share one across servers)."""
        self._engines[engine.name] = MeteredEngine(engine, self.meter)

    def started(self) -> list[str]:
        return sorted(self._engines)

    def devices(self) -> dict[str, str]:
        """Each started engine's device: 'cpu', 'cuda:0', 'cuda:0,1 (tensor parallel 2)';
        'remote' for upstreams."""
        return {name: getattr(e, "device", "cpu") for name, e in sorted(self._engines.items())}

    def engine(self, model: str) -> Engine | EmbeddingEngine | None:
        """The started engine for `model`, if it has started (metrics read them)."""
        return self._engines.get(model)

    async def get(self, model: str) -> Engine:
        """The started text generation engine for `model`."""
        return cast(Engine, await self._get(model, "generate"))

    async def get_embedder(self, model: str) -> EmbeddingEngine:
        """The started embeddings engine for `model`."""
        return cast(EmbeddingEngine, await self._get(model, "embed"))

    async def _get(self, model: str, task: Task) -> Engine | EmbeddingEngine:
        engine = self._engines.get(model)
        if engine is not None and not self.registry.has(model):
            return engine  # added by hand (tests, benchmarks): trusted as it is
        spec = self.registry.get(model)
        if spec.task != task:
            does = "creates embeddings" if spec.task == "embed" else "generates text"
            raise InvalidRequest(
                f"The model '{model}' {does}; it cannot serve this request.",
                param="model",
                code="model_not_supported",
            )
        if spec.batch_style is not None:
            raise InvalidRequest(
                f"The model '{model}' runs through an upstream Batch API: it accepts batch "
                "requests only (POST /v1/batches or /v1/messages/batches).",
                param="model",
                code="model_not_supported",
            )
        dead: Engine | EmbeddingEngine | None = None
        if engine is not None and has_died(engine):
            dead = self._engines.pop(model)
            self.num_restarts[model] = self.num_restarts.get(model, 0) + 1
            log.warning("the engine for %s has died; starting a new one", model)
        elif engine is not None:
            return engine
        starting = self._starting.get(model)
        if starting is None:
            starting = asyncio.create_task(self._start(spec, replacing=dead))
            self._starting[model] = starting
        try:
            return await asyncio.shield(starting)
        finally:
            if starting.done():
                self._starting.pop(model, None)

    async def _start(
        self, spec: ModelSpec, *, replacing: Engine | EmbeddingEngine | None = None
    ) -> Engine | EmbeddingEngine:
        if replacing is not None:
            # Release what is left of the dead engine (its other processes, its record
            # in run_dir) before its replacement takes the same names.
            try:
                await asyncio.wait_for(replacing.shutdown(), DEAD_ENGINE_SHUTDOWN_SECONDS)
            except Exception:
                log.exception("shutting down the dead engine for %s failed", spec.name)
        engine: Engine | EmbeddingEngine
        engine_plan: engine_args.EnginePlan | None = None
        if spec.engine == "echo":
            engine = EchoEngine(spec.name, delay_seconds=spec.delay_seconds)
        elif isinstance(spec.upstream, HTTPUpstream):
            from freight.engines.http_engine import HTTPEngine

            engine = HTTPEngine(spec.name, spec.upstream)
        elif spec.engine == "embeddings":
            from freight.engines import embeddings

            path = await asyncio.to_thread(self.registry.weights_dir, spec)
            engine = embeddings.EmbeddingsEngine(
                spec.name,
                path,
                self.settings.embeddings,
                device=embeddings.device_for(self.settings.embeddings, self._entry(spec.name)),
            )
        else:
            from freight.engines.vllm_engine import VLLMEngine

            try:
                engine_plan = await asyncio.to_thread(self._plan, spec.name)
            except ConfigError as exc:
                self.failures[spec.name] = str(exc)
                raise EngineUnavailable(f"the engine for {spec.name} cannot start: {exc}") from exc
            weights = await asyncio.to_thread(self.registry.weights_dir, spec)
            engine = VLLMEngine(
                spec.name,
                weights,
                engine_plan,
                self.settings.engine,
                self.settings.run_dir,
                tool_call_parser=spec.tool_call_parser,
            )
        log.info("starting engine for %s on %s", spec.name, getattr(engine, "device", "cpu"))
        try:
            if spec.engine in LOCAL_ENGINES:
                async with self._start_lock, machine_lock(self.settings.run_dir / START_LOCK):
                    if engine_plan is not None:
                        # Checked under the lock: an engine started meanwhile counts too.
                        engine_args.check_shares([*self._running_plans(), (spec.name, engine_plan)])
                    await engine.start()
            else:
                await engine.start()
        except Exception as exc:
            self.failures[spec.name] = f"{type(exc).__name__}: {exc}"
            raise EngineUnavailable(
                f"the engine for {spec.name} could not start: {self.failures[spec.name]}"
            ) from exc
        log.info("engine for %s is ready", spec.name)
        self.failures.pop(spec.name, None)
        if engine_plan is not None:
            self._plans[spec.name] = engine_plan
        metered = MeteredEngine(engine, self.meter)
        self._engines[spec.name] = metered
        return metered

    def _plan(self, model: str) -> engine_args.EnginePlan:
        """The vLLM engine plan for `model`; the whole configuration is checked first, once
        (imports vLLM: called in a thread)."""
        if self._device is None:
            device = engine_args.detect()
            engine_args.check(self.settings, device, engine_args.vllm_argument_names())
            if not device.is_cuda and (warning := engine_args.overridden_by_environment()):
                log.warning(warning)
            self._device = device
        return engine_args.plan(self.settings, self._entry(model), self._device)

    def _entry(self, model: str) -> ModelSettings | None:
        """The model's `[[models]]` entry; None for an embedded default."""
        return next((m for m in self.settings.models if m.name == model), None)

    def _running_plans(self) -> list[tuple[str, engine_args.EnginePlan]]:
        return [
            (name, plan)
            for name, plan in self._plans.items()
            if name in self._engines and not has_died(self._engines[name])
        ]

    async def shutdown(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.shutdown()


@contextlib.asynccontextmanager
async def machine_lock(path: Path) -> AsyncIterator[None]:
    """Held by one process of this home at a time (other `freight serve`/`worker`
    processes start their engines on the same devices). Waits without blocking the loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def has_died(engine: Engine | EmbeddingEngine) -> bool:
    """Whether a started engine has stopped by itself (engines say so with `is_running`)."""
    return getattr(engine, "is_running", True) is False
