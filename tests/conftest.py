"""Fixtures shared by the three tiers: settings, live servers on loopback, the real engine.

One real vLLM engine serves the whole session (`real_server`): it starts once (about
30 s) and every e2e test that needs real generation talks to it over HTTP. Tests that
only exercise Freight's own logic use the zero-cost echo engine in their own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from freight import netguard
from freight.api.server import uvicorn_config
from freight.app import create_app
from freight.config import (
    DEFAULT_CHAT_MODEL,
    EngineSettings,
    ModelSettings,
    Settings,
    WorkerSettings,
)
from freight.service.runtime import Service
from freight.store.db import Database
from tests.netstubs import StubResolver
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
# pytest-xdist gives its workers COLUMNS=80; rich consoles made at import time would keep
# that width, while CLI tests set COLUMNS per call, as a terminal would.
os.environ.pop("COLUMNS", None)
MODEL_CACHE = REPO / ".freight" / "models"
CHAT_MODEL = DEFAULT_CHAT_MODEL

# The real engine under test: fp32 makes greedy decoding batch-invariant
# (docs/guides/models.md, Determinism), eager mode starts in seconds instead of compiling
# for a minute. The sizes are fixed rather than vLLM's per-device choices, so the tests behave alike
# everywhere; a 1 GiB KV cache and a 0.15 share of a GPU (CPU ignores it) let several
# test engines share one GPU.
TEST_ENGINE = EngineSettings(
    dtype="float32",
    enforce_eager=True,
    kv_cache_gib=1.0,
    max_model_len=2048,
    max_num_seqs=256,
    max_num_batched_tokens=4096,
    gpu_memory_utilization=0.15,
)
TEST_ENGINE_ENV = {
    "FREIGHT_ENGINE__DTYPE": "float32",
    "FREIGHT_ENGINE__ENFORCE_EAGER": "true",
    "FREIGHT_ENGINE__KV_CACHE_GIB": "1",
    "FREIGHT_ENGINE__MAX_MODEL_LEN": "2048",
    "FREIGHT_ENGINE__MAX_NUM_SEQS": "256",
    "FREIGHT_ENGINE__MAX_NUM_BATCHED_TOKENS": "4096",
    "FREIGHT_ENGINE__GPU_MEMORY_UTILIZATION": "0.15",
    "FREIGHT_MODEL_CACHE": str(MODEL_CACHE),
    "VLLM_LOGGING_LEVEL": "WARNING",
}
T = TypeVar("T")

FAST_WORKER = WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, lease_seconds=10)


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "model_cache": MODEL_CACHE,
        "models": [ModelSettings(name="echo", engine="echo")],
        # copies: a test that changes its settings' sections changes no other test's
        "engine": TEST_ENGINE.model_copy(),
        "worker": FAST_WORKER.model_copy(),
    }
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`freight serve`'s app on a loopback port, in a thread with its own event loop."""

    def __init__(self, svc: Service, preload: list[str] | None = None) -> None:
        self.svc = svc
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The Config `freight serve` uses: the same [server] connection limits.
        config = uvicorn_config(
            create_app(svc, preload=preload),
            svc.settings,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def openai(self, **kwargs: Any) -> Any:
        import openai

        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="test", **kwargs)
        SDK_CLIENTS.append(client)
        return client

    def anthropic(self, **kwargs: Any) -> Any:
        import anthropic

        client = anthropic.Anthropic(base_url=self.base_url, api_key="test", **kwargs)
        SDK_CLIENTS.append(client)
        return client

    def run_in_loop(self, coro: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        """Run `coro` on the server's event loop, where its engines live; its result."""
        loop = self.server.servers[0].get_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def wait_for_engine(self, model: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while model not in (health := httpx.get(f"{self.base_url}/health").json())["engines"]:
            if model in health["engine_failures"]:
                raise RuntimeError(f"the engine for {model} failed: {health['engine_failures']}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the engine for {model} did not start in {timeout} s")
            time.sleep(0.5)


# Every SDK client a test makes through LiveServer, closed when that test ends
# (close_sdk_clients). Left to the garbage collector, a client's open sockets warn in
# whichever later test the collector happens to run in, which filterwarnings turns into
# an error of that unrelated test.
SDK_CLIENTS: list[Any] = []


@pytest.fixture(autouse=True)
def close_sdk_clients() -> Iterator[None]:
    yield
    while SDK_CLIENTS:
        SDK_CLIENTS.pop().close()


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    """Webhook host names resolve through a stub (none by default): no test asks a DNS
    server for a name it made up (the schemathesis run invents many). A test that needs a
    name sets it on the returned resolver."""
    resolver = StubResolver()
    monkeypatch.setattr(netguard, "system_resolve", resolver)
    return resolver


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL (its own database, created and dropped).

    Every Database the test opens is disposed before its database is dropped, so no
    pooled connection outlives the test (psycopg warns about those).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'freight.db'}"
        return
    from tests.postgres import temporary_database

    opened: list[Database] = []
    original_init = Database.__init__

    def tracking_init(self: Database, url: str) -> None:
        original_init(self, url)
        opened.append(self)

    monkeypatch.setattr(Database, "__init__", tracking_init)
    with temporary_database() as url:
        try:
            yield url
        finally:
            for db in opened:
                db.dispose()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tries of a failing request, batch step or store access follow each other at once:
    for tests of what the tries do, not of the pause between them (test_retries has it)."""
    from freight.store import faults
    from freight.worker import dispatcher

    monkeypatch.setattr(dispatcher, "backoff_seconds", lambda attempt, cap=30.0: 0.0)
    monkeypatch.setattr(faults, "Backoff", functools.partial(faults.Backoff, first_seconds=0.0))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def echo_server(settings: Settings) -> Iterator[LiveServer]:
    """A fresh server (own store) whose only engine is the zero-cost echo engine."""
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One echo server for a module whose tests each read only what they sent (a module
    opts in by defining its `echo_server` as this): a server per test costs ~0.4 s."""
    settings = make_settings(tmp_path_factory.mktemp("module-home") / "home")
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with the real vLLM engine for the whole session."""
    home = tmp_path_factory.mktemp("real-home")
    server = LiveServer(Service(make_settings(home)), preload=[CHAT_MODEL]).start()
    server.wait_for_engine(CHAT_MODEL)
    yield server
    server.stop()


TOOLS_MODEL = "smollm2-hermes"  # the default model's weights with vLLM's `hermes` parser
NARROW_MODEL = "smollm2-narrow"  # the same weights, a short context and a narrow batch
GiB = 1024**3


@pytest.fixture(scope="session")
def two_engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with two more vLLM engines of the default model's weights, each with its
    own settings: TOOLS_MODEL (a tool-call parser, a 1 GiB KV cache of its own) and
    NARROW_MODEL (512 tokens of context, 4 sequences at a time, [engine] kv_cache_gib).
    Shared by the tests of engine settings and of auto tool choice: an engine start is
    the dearest thing in the suite, so they start once for both."""
    weights = MODEL_CACHE / CHAT_MODEL
    models = [
        ModelSettings(
            name=NARROW_MODEL, path=weights, max_model_len=512, engine_args={"max_num_seqs": 4}
        ),
        ModelSettings(
            name=TOOLS_MODEL,
            path=weights,
            max_model_len=1024,
            kv_cache_bytes=GiB,
            tool_call_parser="hermes",
        ),
    ]
    settings = make_settings(
        tmp_path_factory.mktemp("two-engines"),
        models=models,
        engine=TEST_ENGINE.model_copy(update={"kv_cache_gib": 1.5}),
    )
    server = LiveServer(Service(settings), preload=[NARROW_MODEL, TOOLS_MODEL]).start()
    for name in (NARROW_MODEL, TOOLS_MODEL):
        server.wait_for_engine(name)
    yield server
    server.stop()


SHARED_ENGINE_FIXTURES = frozenset({"real_server", "two_engine_server"})
ENGINE_TESTS = "freight_engine_tests"  # workerinput key: the file that lists those tests
engine_tests_file = pytest.StashKey[Path]()


# `make test` runs two pytest-xdist workers (`-n 2`). Every test that uses a session engine
# goes to one worker, so each engine starts once; the other tests of a module stay together
# (its module-scoped servers start once) and go to whichever worker is free. The workers
# collect, so they list the engine tests (by each test's fixture closure) in a file the
# controller's scheduler reads. (xdist's own `xdist_group` marks do not reach its
# scheduler under pytest 9.2, which no longer reads `item._nodeid`.)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no":
        fd, path = tempfile.mkstemp(prefix="freight-engine-tests-", suffix=".json")
        os.close(fd)
        config.stash[engine_tests_file] = Path(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    if engine_tests_file in config.stash:
        config.stash[engine_tests_file].unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[ENGINE_TESTS] = str(node.config.stash[engine_tests_file])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = getattr(config, "workerinput", {}).get(ENGINE_TESTS)
    if path is None:
        return
    engine_tests = [
        item.nodeid
        for item in items
        if SHARED_ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    ]
    written = Path(f"{path}.{config.workerinput['workerid']}")
    written.write_text(json.dumps(engine_tests))
    written.replace(path)  # both workers write the same list; each write is whole


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class SharedEngineScheduling(LoadScopeScheduling):
        engine_tests: frozenset[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.engine_tests is None:  # read once every worker has collected
                listed = json.loads(config.stash[engine_tests_file].read_text())
                self.engine_tests = frozenset(listed)
            return "shared-engines" if nodeid in self.engine_tests else nodeid.split("::")[0]

    return SharedEngineScheduling(config, log)


# --- helpers ------------------------------------------------------------------------------


def chat_line(custom_id: str, content: str, *, model: str = CHAT_MODEL, **body: Any) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}], **body},
    }


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    with open(path, "w") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for_batch(client: Any, batch_id: str, timeout: float = 600) -> Any:
    """Poll an OpenAI batch until it has ended; returns it."""
    terminal = {"completed", "failed", "expired", "cancelled"}

    def ended() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in terminal else None

    return wait_until(ended, timeout=timeout, interval=0.05, what=f"batch {batch_id} to end")


def wait_for_message_batch(client: Any, batch_id: str, timeout: float = 600) -> Any:
    """Poll an Anthropic Message Batch until it has ended; returns it."""

    def ended() -> Any:
        batch = client.messages.batches.retrieve(batch_id)
        return batch if batch.processing_status == "ended" else None

    return wait_until(
        ended, timeout=timeout, interval=0.05, what=f"message batch {batch_id} to end"
    )


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = False,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the `freight` command as a user would, in a subprocess."""
    full_env = {**os.environ, **TEST_ENGINE_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "freight.cli.main", *args],
        input=stdin,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@contextlib.contextmanager
def serve_process(
    home: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`freight serve` as a subprocess (for restart and signal tests)."""
    full_env = {**os.environ, **TEST_ENGINE_ENV, **(env or {})}
    with open(home / f"serve-{port}-{time.time():.0f}.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freight.cli.main",
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                *extra,
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the engine's processes too
        )
        try:
            yield proc
        except BaseException:
            # pytest shows what a failing test printed: the server's side of the story
            log.flush()
            tail = Path(log.name).read_text(errors="replace").splitlines()[-80:]
            print(f"--- the last lines of {log.name} ---", *tail, sep="\n")
            raise
        finally:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process and its children (vLLM's engine processes), SIGKILL stragglers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_http(url: str, timeout: float = 120, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.2)


def run_offline(
    server: LiveServer,
    settings: Settings,
    input_path: Path,
    output: Path,
    *,
    errors: Path | None = None,
    timeout: float = 600,
) -> tuple[int, str]:
    """What `freight run` does with `settings` (offline.py), on the engines `server` has
    started instead of its own: its exit code and what it printed. (Each engine start
    costs a test half a minute; `freight run` processes starting their own are
    test_ray's, and test_cli's with the echo engine.)
    """
    from rich.console import Console

    from freight.service import offline

    printed = io.StringIO()
    run = offline.run_file_async(
        settings,
        input_path,
        output,
        errors,
        None,
        console=Console(file=printed, width=200),
        engines=server.svc.engines,
    )
    return server.run_in_loop(run, timeout), printed.getvalue()


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
