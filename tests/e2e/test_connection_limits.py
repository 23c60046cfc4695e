"""Connection limits before a request reaches the app (`[server]`, api/slow_clients.py):
the request head's size and deadline, the body stall timeout, the cap on open
connections, and `freight serve` on IPv6 loopback.

Servers here run with short timeouts so that a slow client's fate shows in seconds. The
sleeps inside slow clients are the behaviour under test (a client being slow); every
wait for the server is a deadline on something observable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from freight.config import ServerSettings
from freight.service.runtime import Service
from tests.conftest import LiveServer, free_port, make_settings, serve_process, wait_http

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
NUM_SLOW_HEADS = 150
NUM_SLOW_BODIES = 50


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Starts echo servers with the given `[server]` limits; stops them after the test."""
    started: list[LiveServer] = []

    def start(**limits: float) -> LiveServer:
        home = tmp_path / f"home{len(started)}"
        server = LiveServer(Service(make_settings(home, server=ServerSettings(**limits))))
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def chat_head(content_length: int, path: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    ).encode()


def chat_body(content: str = "hi") -> bytes:
    return json.dumps(
        {"model": "echo", "messages": [{"role": "user", "content": content}]}
    ).encode()


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection; what the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends until it closes; b"" if it reset the connection first.

    A server that holds the connection instead raises TimeoutError (the socket's timeout).
    """
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def error_message(response: bytes) -> str:
    return str(json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["message"])


# --- slow clients ---------------------------------------------------------------------------


async def trickle_head(port: int) -> tuple[float, bytes]:
    """A slowloris: a request head that never ends, one more byte every half second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    trickle = itertools.cycle(b"X-Slow: yes\r\n")
    received = b""
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                writer.write(bytes([next(trickle)]))
                continue
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass  # our trickled byte met the closed socket: closed all the same
    writer.close()
    return time.monotonic() - opened, received


async def stall_body(port: int) -> tuple[float, bytes]:
    """A complete head, then part of the body, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()
    writer.write(chat_head(1000) + b'{"model": "echo", ')
    received = await reader.read()  # until the server closes
    writer.close()
    return time.monotonic() - opened, received


async def watch_health(base_url: str, stop: asyncio.Event) -> list[tuple[int, float]]:
    """/health, again and again until `stop`: (status, seconds) of each."""
    answers = []
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            response = await client.get(f"{base_url}/health")
            answers.append((response.status_code, time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)  # the probe's pace
    return answers


def test_slowloris_connections_are_closed_at_the_timeouts_while_health_answers(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(header_timeout_seconds=HEAD_TIMEOUT, body_timeout_seconds=BODY_TIMEOUT)

    async def attack() -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]], list]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_health(server.base_url, stop))
        async with asyncio.timeout(30):  # unbounded connections would hang here
            heads = asyncio.gather(*(trickle_head(server.port) for _ in range(NUM_SLOW_HEADS)))
            bodies = asyncio.gather(*(stall_body(server.port) for _ in range(NUM_SLOW_BODIES)))
            results = await asyncio.gather(heads, bodies)
        stop.set()
        return results[0], results[1], await watcher

    heads, bodies, health = asyncio.run(attack())

    for took, received in heads:
        assert HEAD_TIMEOUT * 0.5 <= took < HEAD_TIMEOUT + 8, took
        if received:  # a trickled byte may have reset the connection before the answer
            assert status_of(received) == 408, received
            assert "header_timeout_seconds" in error_message(received)
    assert any(received for _, received in heads)
    for took, received in bodies:
        assert BODY_TIMEOUT * 0.5 <= took < BODY_TIMEOUT + 8, took
        assert status_of(received) == 408, received
        assert b"connection: close" in received.lower()
        assert "body_timeout_seconds" in error_message(received)
    assert len(health) >= 3, health  # it kept answering through the attack...
    assert all(status == 200 for status, _ in health), health
    assert max(seconds for _, seconds in health) < 2, health  # ...promptly


def test_a_keep_alive_connection_must_send_its_next_head_in_time(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(header_timeout_seconds=HEAD_TIMEOUT)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        answered = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never: ends")
        second = read_until_closed(sock)
    assert status_of(first) == 200
    assert status_of(second) == 408
    assert HEAD_TIMEOUT * 0.5 <= time.monotonic() - answered < HEAD_TIMEOUT + 5


def test_an_answered_request_whose_body_stalls_is_closed(
    start_server: Callable[..., LiveServer],
) -> None:
    """/health answers without reading the body; the rest of it may not hang forever."""
    server = start_server(body_timeout_seconds=BODY_TIMEOUT)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        sock.sendall(b"x" * 10)
        answer = sock.recv(65536)
        sock.sendall(b"x" * 10)  # more of the body after the answer, then nothing
        sent = time.monotonic()
        rest = read_until_closed(sock)
    assert status_of(answer) == 200
    assert rest == b""  # closed without another answer: the client has its response
    assert BODY_TIMEOUT * 0.5 <= time.monotonic() - sent < BODY_TIMEOUT + 5


def test_a_slow_body_that_keeps_moving_is_not_cut_off(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(body_timeout_seconds=BODY_TIMEOUT)
    body = chat_body("slow but steady")
    pieces = [body[i : i + 20] for i in range(0, len(body), 20)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(chat_head(len(body)))
        started = time.monotonic()
        for piece in pieces:
            time.sleep(BODY_TIMEOUT / 2)  # the slow client: a pause shorter than the timeout
            sock.sendall(piece)
        response = sock.recv(65536)
    assert time.monotonic() - started > BODY_TIMEOUT  # slower in all than one timeout
    assert status_of(response) == 200, response


# --- request head size ----------------------------------------------------------------------


def test_a_request_head_over_the_limit_gets_431_and_one_under_it_is_served(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(max_header_bytes=8192)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: %s\r\n\r\n"

    assert status_of(exchange(server.port, head % (b"a" * 7000))) == 200
    refused = exchange(server.port, head % (b"a" * 9000))
    assert status_of(refused) == 431, refused
    assert "8192 bytes ([server] max_header_bytes)" in error_message(refused)
    # A head that never ends is refused once it passes the limit, not held.
    unfinished = exchange(server.port, (head % (b"a" * 100_000))[:-4])
    assert status_of(unfinished) in (431, 0), unfinished  # 0: reset before it was read
    # The limit is on the head alone: a large body sent with it in one write is fine.
    body = chat_body("b" * 100_000)
    assert status_of(exchange(server.port, chat_head(len(body)) + body)) == 200


@pytest.mark.slow
def test_memory_stays_bounded_with_50_connections_holding_huge_partial_heads(
    tmp_path: Path,
) -> None:
    """The probe that found this: 50 unfinished 4 MB heads took the server from 139 MB
    to 340 MB. Now each is refused past 64 KiB, and heads held under the limit cost at
    most the limit each."""
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    config = tmp_path / "freight.toml"
    config.write_text(
        '[[models]]\nname = "echo"\nengine = "echo"\n\n[server]\nheader_timeout_seconds = 60\n'
    )
    env = {"FREIGHT_CONFIG": str(config)}
    with serve_process(home, port, "--no-preload", "--no-worker", env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", proc=proc)
        server = psutil.Process(proc.pid)
        for _ in range(20):  # warm up the request path before the baseline
            httpx.get(f"{base}/health")
        baseline = server.memory_info().rss
        peak = RssPeak(server)

        def huge_head() -> bytes:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for _ in range(64):  # 4 MiB, never finished
                        sock.sendall(b"a" * 65536)
                return read_until_closed(sock)
            finally:
                sock.close()

        with peak, ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: huge_head(), range(50)))
        # Refused (431) or cut off (reset), never held (read_until_closed would time out).
        assert all(status_of(answer) in (431, 0) for answer in answers), answers[:3]
        assert peak.growth(baseline) < 40 * 2**20, peak.growth(baseline)

        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        with peak:
            for sock in held:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 60_000)
            wait_http(f"{base}/health", proc=proc)  # the server has read what was sent
        for sock in held:  # still open: under the limit, within the deadline
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.close()
        assert peak.growth(baseline) < 40 * 2**20, peak.growth(baseline)


class RssPeak:
    """The highest resident set size of a process, sampled while the block runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> RssPeak:
        self.stop.clear()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def growth(self, baseline: int) -> int:
        return self.peak - baseline


# --- the connection cap ---------------------------------------------------------------------


def test_connections_over_the_cap_get_503_and_the_server_recovers(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(max_connections=20, header_timeout_seconds=60)
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        deadline = time.monotonic() + 10
        while (response := health_or_none(server)) is None or response.status_code != 503:
            assert time.monotonic() < deadline, "the 21st connection was served"
        assert response.headers["retry-after"] == "1"
        assert "limit of 20 open connections" in response.json()["error"]["message"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.base_url}/health").status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover"


def health_or_none(server: LiveServer) -> httpx.Response | None:
    """GET /health; None when the connection was reset (a refusal that lost the 503)."""
    try:
        return httpx.get(f"{server.base_url}/health")
    except httpx.TransportError:
        return None


# --- IPv6 ---------------------------------------------------------------------------------


def ipv6_loopback_port() -> int | None:
    """A free port on ::1, or None where this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serve_listens_on_ipv6_loopback(tmp_path: Path, host: str) -> None:
    port = ipv6_loopback_port()
    if port is None:
        pytest.skip("this machine has no IPv6 loopback (::1 cannot be bound)")
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "freight.toml"
    config.write_text('[[models]]\nname = "echo"\nengine = "echo"\n')
    env = {"FREIGHT_CONFIG": str(config)}
    with serve_process(home, port, "--host", host, "--no-preload", env=env) as proc:
        wait_http(f"http://[::1]:{port}/health", proc=proc)
        assert httpx.get(f"http://[::1]:{port}/v1/models").status_code == 200
    log = next(home.glob("serve-*.log")).read_text()
    assert f"http://[::1]:{port}/v1" in log  # the address it prints is one a client can use
