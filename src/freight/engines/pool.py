"""Engines by model name, started on first use and shared by the API and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from freight.config import Settings
from freight.engines.base import Engine
from freight.engines.echo import EchoEngine
from freight.engines.metering import EngineMeter, MeteredEngine
from freight.models import ModelSpec, Registry

log = logging.getLogger(__name__)


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
        self._engines: dict[str, Engine] = {}
        self._starting: dict[str, asyncio.Task[Engine]] = {}
        self.failures: dict[str, str] = {}  # model → why its engine last failed to start
        self.meter = EngineMeter()  # every engine handed out is metered (engines/metering.py)

    def add(self, engine: Engine) -> None:
        """Register an already-started engine (tests share one across servers)."""
        self._engines[engine.name] = MeteredEngine(engine, self.meter)

    def started(self) -> list[str]:
        return sorted(self._engines)

    async def get(self, model: str) -> Engine:
        engine = self._engines.get(model)
        if engine is not None:
            return engine
        task = self._starting.get(model)
        if task is None:
            task = asyncio.create_task(self._start(self.registry.get(model)))
            self._starting[model] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(model, None)

    async def _start(self, spec: ModelSpec) -> Engine:
        engine: Engine
        if spec.engine == "echo":
            engine = EchoEngine(spec.name)
        else:
            from freight.engines.vllm import VLLMEngine

            weights = await asyncio.to_thread(self.registry.weights_dir, spec)
            engine = VLLMEngine(spec.name, weights, self.settings.engine, self.settings.run_dir)
        log.info("starting engine for %s", spec.name)
        try:
            await engine.start()
        except Exception as exc:
            self.failures[spec.name] = f"{type(exc).__name__}: {exc}"
            raise
        log.info("engine for %s is ready", spec.name)
        self.failures.pop(spec.name, None)
        metered = MeteredEngine(engine, self.meter)
        self._engines[spec.name] = metered
        return metered

    async def shutdown(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.shutdown()
