"""Graceful shutdown of `freight serve` and `freight worker`: SIGTERM drains, a second exits.

First SIGTERM: no new work is admitted, requests in flight finish within
`worker.drain_seconds`, unfinished leases are given back, and the process exits 0.
Second SIGTERM: the process exits at once, and still nothing is lost, because the
leases it held expire and the next start runs those requests (exactly once).
The echo engine with a per-request delay keeps requests in flight long enough to see.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from freight.store import batch_requests, batches
from freight.store.db import Database
from freight.store.statuses import RequestStatus
from tests.conftest import (
    TEST_ENGINE_ENV,
    chat_line,
    free_port,
    serve_process,
    wait_http,
)
from tests.sdk import batch_lines
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

NUM_REQUESTS = 60


def config(tmp_path: Path, delay: float, drain: float) -> dict[str, str]:
    path = tmp_path / "freight.toml"
    path.write_text(
        f"""
[[models]]
name = "echo"
engine = "echo"
delay_seconds = {delay}

[worker]
max_in_flight = 8
lease_seconds = 2
poll_seconds = 0.05
flush_seconds = 0.05
drain_seconds = {drain}
"""
    )
    return {"FREIGHT_CONFIG": str(path)}


def create_batch(base: str) -> str:
    lines = [chat_line(f"r{i}", f"say {i}", model="echo") for i in range(NUM_REQUESTS)]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = httpx.post(
        f"{base}/v1/files", files={"file": ("in.jsonl", raw)}, data={"purpose": "batch"}
    ).json()
    body = {
        "input_file_id": uploaded["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    return str(httpx.post(f"{base}/v1/batches", json=body).json()["id"])


def wait_in_flight(base: str, proc: subprocess.Popen[str]) -> int:
    def in_flight() -> int:
        assert proc.poll() is None, "the server exited"
        return int(httpx.get(f"{base}/health").json()["worker"]["in_flight"])

    return wait_until(in_flight, timeout=60, what="requests in flight")


def refuses_connections(base: str) -> bool:
    """Whether the server stopped listening (what it does first on a SIGTERM). A request
    whose connection it accepted just before closes unanswered: uvicorn closes its
    listener first, then the connections that carry no request it is answering."""
    try:
        httpx.get(f"{base}/health", timeout=5)
    except (httpx.ConnectError, httpx.RemoteProtocolError):
        return True
    return False


def request_counts(home: Path, batch_id: str) -> dict[str, int]:
    db = Database(f"sqlite:///{home / 'freight.db'}")
    try:
        with db.read() as conn:
            return batch_requests.count_by_status(conn, batch_id)
    finally:
        db.dispose()


def test_sigterm_lets_in_flight_requests_finish_releases_leases_and_exits_0(
    tmp_path: Path,
) -> None:
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    base = f"http://127.0.0.1:{port}"
    env = config(tmp_path, delay=0.5, drain=10)
    with serve_process(home, port, "--no-preload", env=env) as proc:
        wait_http(f"{base}/health", proc=proc)
        batch_id = create_batch(base)
        in_flight = wait_in_flight(base, proc)
        before = request_counts(home, batch_id).get(RequestStatus.SUCCEEDED, 0)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - signalled
    counts = request_counts(home, batch_id)
    assert RequestStatus.RUNNING not in counts, counts  # every lease given back
    # What was in the engine finished (0.5 s each, well within the 10 s drain), and
    # nothing new was claimed: the rest is queued for the next start.
    assert counts.get(RequestStatus.SUCCEEDED, 0) >= before + in_flight
    assert counts.get(RequestStatus.QUEUED, 0) > 0
    assert sum(counts.values()) == NUM_REQUESTS
    assert took < 10 + 5, f"shutdown took {took:.1f} s, past the drain bound"


def test_second_sigterm_exits_at_once_and_the_restart_loses_nothing(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    base = f"http://127.0.0.1:{port}"
    # Requests take 3 s and the drain would wait 60 s: only the second signal is quick.
    with serve_process(home, port, "--no-preload", env=config(tmp_path, 3, 60)) as proc:
        wait_http(f"{base}/health", proc=proc)
        batch_id = create_batch(base)
        wait_in_flight(base, proc)
        proc.send_signal(signal.SIGTERM)
        # The first signal was handled (the listener is closed, the drain runs) before
        # the second is sent: two signals pending at once would arrive as one.
        wait_until(lambda: refuses_connections(base), what="the first SIGTERM to be handled")
        assert proc.poll() is None  # draining
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) != 0  # exits now, not after the drain
        assert time.monotonic() - signalled < 5
    assert request_counts(home, batch_id).get(RequestStatus.RUNNING, 0) > 0  # leases left behind

    with serve_process(home, port, "--no-preload", env=config(tmp_path, 0.01, 10)) as proc:
        wait_http(f"{base}/health", proc=proc)
        batch = wait_until(
            lambda: (
                (b := httpx.get(f"{base}/v1/batches/{batch_id}").json())["status"] == "completed"
                and b
            ),
            timeout=60,
            what="the batch to complete after the restart",
        )
        output = batch_lines(httpx.get(f"{base}/v1/files/{batch['output_file_id']}/content").text)
    seen = collections.Counter(line["custom_id"] for line in output)
    assert len(seen) == NUM_REQUESTS and max(seen.values()) == 1
    assert batch["request_counts"] == {
        "total": NUM_REQUESTS,
        "completed": NUM_REQUESTS,
        "failed": 0,
    }


def start_worker(home: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`freight worker`, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "freight.cli.main", "worker", "--home", str(home)],
            env={**os.environ, **TEST_ENGINE_ENV, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_running(home: Path, batch_id: str, proc: subprocess.Popen[bytes]) -> None:
    def running() -> int:
        assert proc.poll() is None, "the worker exited"
        return request_counts(home, batch_id).get(RequestStatus.RUNNING, 0)

    wait_until(running, timeout=60, interval=0.05, what="requests running")


def test_worker_command_drains_on_sigterm_and_exits_at_once_on_a_second(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    base = f"http://127.0.0.1:{port}"
    with serve_process(home, port, "--no-preload", "--no-worker", env={}) as api:
        wait_http(f"{base}/health", proc=api)
        batch_id = create_batch(base)
    # One SIGTERM: in-flight requests finish, leases are given back, exit 0.
    worker = start_worker(home, config(tmp_path, delay=0.5, drain=10), tmp_path / "worker1.log")
    try:
        wait_running(home, batch_id, worker)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert RequestStatus.RUNNING not in request_counts(home, batch_id)
        # Two: the second ends the drain of 3 s requests at once.
        log = tmp_path / "worker2.log"
        worker = start_worker(home, config(tmp_path, delay=3, drain=60), log)
        wait_running(home, batch_id, worker)
        worker.send_signal(signal.SIGTERM)
        wait_until(  # handled, so that the second signal is not merged into it
            lambda: "SIGTERM: finishing in-flight work" in log.read_text(),
            what="the worker to log that it drains",
        )
        assert worker.poll() is None  # draining
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=5) != 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    db = Database(f"sqlite:///{home / 'freight.db'}")
    try:
        with db.read() as conn:
            assert batches.get(conn, batch_id).status == "in_progress"  # resumable, not lost
    finally:
        db.dispose()
