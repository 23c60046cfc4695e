"""A slow blob store holds up only the request that waits for it, never the event loop.

The server's file bodies live on a deliberately slow device (SlowBlobs: each write, commit,
read or delete takes DELAY seconds). While an upload streams into it, or a delete or a
download waits on it, `/health` and a real-time request to the echo engine answer as
fast as ever. Before blob calls left the event loop (store/blob_store.py AsyncBlobs), an
upload's writes and a failed upload's delete ran on it, and every other request waited.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion as SDKChatCompletion

from freight.config import Settings
from freight.service.runtime import Service
from freight.store.blob_store import BlobStore
from tests.conftest import LiveServer, chat_line
from tests.waiting import wait_until

DELAY = 10.0  # seconds per slow blob call, unless the test lets the store hurry
PROBE_SECONDS = 2.0  # how long the server is probed while a slow call is under way
# The most /health or a real-time echo request may take meanwhile. Both answer in about
# 10 ms; one that waited on the store takes DELAY. The margin is for a loaded machine
# (2 cores shared by many test runs saw 1 s stalls of every request).
PROMPT_SECONDS = 2.0
PROBE_TIMEOUT = DELAY  # a probe that gets no answer this soon counts as this slow
UPLOAD_BYTES = 3 * 1024 * 1024  # three pieces of blobs.WRITE_BYTES, and more
T = TypeVar("T")


class SlowFile:
    """A blob's file whose writes and reads are slow (when the store says so)."""

    def __init__(self, fh: BinaryIO, store: SlowBlobs) -> None:
        self.fh = fh
        self.store = store

    def write(self, data: bytes) -> int:
        with self.store.slowly("write"):
            return self.fh.write(data)

    def read(self, size: int = -1) -> bytes:
        with self.store.slowly("read"):
            return self.fh.read(size)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> SlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlowBlobs(BlobStore):
    """Local blobs on a slow device: each call in `slow_calls` ("write", "commit", "read",
    "delete") takes `delay` s, until `hurry()`. Counts the calls started and ended.

    Blobs are served by reading them (`local_path` is None), as from a bucket.
    """

    def __init__(self, root: Path, delay: float) -> None:
        super().__init__(root)
        self.delay = delay
        self.slow_calls: set[str] = set()
        self.started: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._hurried = threading.Event()

    def hurry(self) -> None:
        self._hurried.set()

    @contextlib.contextmanager
    def slowly(self, call: str) -> Iterator[None]:
        if call not in self.slow_calls:
            yield
            return
        with self._lock:
            self.started[call] += 1
        self._hurried.wait(self.delay)  # the slow device: the behaviour under test
        try:
            yield
        finally:
            with self._lock:
                self.ended[call] += 1

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:  # type: ignore[override]
        with super().create(name) as fh:
            yield SlowFile(fh, self)  # type: ignore[misc]
            with self.slowly("commit"):  # an fsync, an S3 upload_fileobj
                pass

    def open(self, name: str) -> BinaryIO:
        return SlowFile(super().open(name), self)  # type: ignore[return-value]

    def delete(self, name: str) -> None:
        with self.slowly("delete"):
            super().delete(name)

    def local_path(self, name: str) -> Path | None:
        return None


@pytest.fixture
def slow_server(settings: Settings) -> Iterator[tuple[LiveServer, SlowBlobs]]:
    store = SlowBlobs(settings.files_dir, DELAY)
    server = LiveServer(Service(settings, blobs=store)).start()
    yield server, store
    store.hurry()
    server.stop()


def timed(send: Callable[[], httpx.Response]) -> tuple[float, httpx.Response | None]:
    """Seconds `send` took, and its response (None if none came within PROBE_TIMEOUT)."""
    started = time.monotonic()
    try:
        response: httpx.Response | None = send()
    except httpx.TimeoutException:
        response = None
    return time.monotonic() - started, response


def probe(client: httpx.Client) -> dict[str, float]:
    """Seconds that /health and a real-time echo chat completion take."""
    health_s, health = timed(lambda: client.get("/health"))
    if health is not None:
        assert health.status_code == 200 and health.json()["status"] == "ok"
    chat = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    realtime_s, answer = timed(lambda: client.post("/v1/chat/completions", json=chat))
    if answer is not None:
        assert answer.status_code == 200, answer.text
        assert SDKChatCompletion.model_validate(answer.json()).choices[0].message.content == "hi"
    return {"health": health_s, "realtime": realtime_s}


def is_prompt(timings: dict[str, float]) -> bool:
    return max(timings.values()) < PROMPT_SECONDS


def probed_during(server: LiveServer, store: SlowBlobs, call: str, work: Callable[[], T]) -> T:
    """Run `work` (a client call) in a thread; once the store is inside a slow `call`,
    probe the server for PROBE_SECONDS (stopping at a slow answer); then let the store
    hurry. Asserts that the probes overlapped `work` and were all prompt."""
    timings: list[dict[str, float]] = []
    with (
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=server.base_url, timeout=PROBE_TIMEOUT) as client,
    ):
        assert is_prompt(probe(client))  # idle: the normal time, and the engine started
        pending = pool.submit(work)
        try:
            wait_until(
                lambda: store.started[call] > 0 or pending.done(),
                timeout=60,
                interval=0.01,
                what=f"a slow {call}",
            )
            assert not pending.done(), f"{pending.result()} ended before any slow {call}"
            probing_ends = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < probing_ends:
                timings.append(probe(client))
                if not is_prompt(timings[-1]):
                    break
            overlapped = not pending.done()
        finally:
            store.hurry()
        result = pending.result(timeout=120)
    slowest = {name: max(t[name] for t in timings) for name in timings[0]}
    assert is_prompt(slowest), f"while a slow {call} was under way the server took {slowest} s"
    assert overlapped, f"the {call} ended before the probes did; make the store slower"
    return result


def jsonl(num_bytes: int) -> bytes:
    line = json.dumps(chat_line("r", "x" * 1000, model="echo")).encode() + b"\n"
    return line * (num_bytes // len(line) + 1)


def openai_client(server: LiveServer) -> openai.OpenAI:
    return server.openai(max_retries=0, timeout=120)


def test_health_and_realtime_answer_while_an_upload_streams_to_a_slow_store(
    slow_server: tuple[LiveServer, SlowBlobs],
) -> None:
    server, store = slow_server
    store.slow_calls = {"write", "commit"}
    data = jsonl(UPLOAD_BYTES)
    client = openai_client(server)

    uploaded = probed_during(
        server,
        store,
        "write",
        lambda: client.files.create(file=("big.jsonl", data), purpose="batch"),
    )
    assert uploaded.bytes == len(data) and store.ended["commit"] == 1
    assert client.files.content(uploaded.id).content == data


def test_health_and_realtime_answer_while_a_message_batch_body_streams_to_a_slow_store(
    slow_server: tuple[LiveServer, SlowBlobs],
) -> None:
    server, store = slow_server
    store.slow_calls = {"write", "commit"}
    text = "x" * 30_000
    params = {"model": "echo", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    num_requests = UPLOAD_BYTES // len(text) + 1
    requests: Any = [{"custom_id": f"m{i}", "params": params} for i in range(num_requests)]
    client = server.anthropic(max_retries=0, timeout=120)

    batch = probed_during(
        server, store, "write", lambda: client.messages.batches.create(requests=requests)
    )
    assert isinstance(batch, anthropic.types.messages.MessageBatch)
    assert batch.request_counts.processing + batch.request_counts.succeeded == num_requests


def test_health_and_realtime_answer_while_a_failed_upload_is_deleted_slowly(
    slow_server: tuple[LiveServer, SlowBlobs],
) -> None:
    server, store = slow_server
    store.slow_calls = {"delete"}
    client = openai_client(server)

    def refused_upload() -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as refused:
            client.files.create(file=("in.jsonl", jsonl(1000)), purpose="nonsense")  # type: ignore[arg-type]
        return refused.value

    refused = probed_during(server, store, "delete", refused_upload)
    assert refused.status_code == 400 and "purpose" in refused.message
    assert store.ended["delete"] == 1 and list(store.root.iterdir()) == []


def test_health_and_realtime_answer_while_a_file_is_deleted_slowly(
    slow_server: tuple[LiveServer, SlowBlobs],
) -> None:
    server, store = slow_server
    client = openai_client(server)
    uploaded = client.files.create(file=("in.jsonl", jsonl(1000)), purpose="batch")
    store.slow_calls = {"delete"}

    deleted = probed_during(server, store, "delete", lambda: client.files.delete(uploaded.id))
    assert deleted.deleted and list(store.root.iterdir()) == []


def test_health_and_realtime_answer_while_a_file_is_read_slowly(
    slow_server: tuple[LiveServer, SlowBlobs],
) -> None:
    server, store = slow_server
    client = openai_client(server)
    data = jsonl(UPLOAD_BYTES)
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    store.slow_calls = {"read"}

    content = probed_during(server, store, "read", lambda: client.files.content(uploaded.id))
    assert content.content == data
