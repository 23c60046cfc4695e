"""Chaos: `freight serve` SIGKILLed at random moments while a 2,000-request batch runs.

The server (API and worker in one process, SQLite, echo engine with a small delay per
request) is killed outright, at a random moment after it comes up, at least MIN_KILLS
times while the batch is still running, and started again each time. Whatever state the
kill caught it in (validating, claims in flight, results half-flushed, finalising), the
batch must end `completed` with every custom_id exactly once across the output and error
files, and the counts must equal the lines. The seed and the kills are printed; rerun a
failure with FREIGHT_CHAOS_SEED=<seed>.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from freight.store import batch_requests, batches
from freight.store.db import Database
from tests.conftest import chat_line, free_port, serve_process, wait_http
from tests.sdk import output_lines

pytestmark = pytest.mark.slow

NUM_REQUESTS = 2000
MIN_KILLS = 10
MAX_KILLS = 40  # a bound, should the batch race ahead between kills
CONFIG = """
[[models]]
name = "echo"
engine = "echo"
delay_seconds = 0.1

[worker]
max_in_flight = 16
lease_seconds = 2
poll_seconds = 0.05
flush_seconds = 0.05
"""
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def batch_status(db: Database, batch_id: str) -> tuple[str, int]:
    with db.read() as conn:
        record = batches.get(conn, batch_id)
    return record.status, record.num_finished


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("FREIGHT_CHAOS_SEED", str(time.time_ns() % 2**32)))
    rng = random.Random(seed)

    def report(message: str) -> None:  # shown in every run, not only failed ones
        with capsys.disabled():
            print(f"\nchaos: {message}", flush=True)

    report(f"seed {seed} (rerun with FREIGHT_CHAOS_SEED={seed})")
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "freight.toml"
    config.write_text(CONFIG)
    env = {"FREIGHT_CONFIG": str(config)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lines = [chat_line(f"r{i}", f"request number {i}", model="echo") for i in range(NUM_REQUESTS)]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()

    batch_id: str | None = None
    kills: list[tuple[float, str, int]] = []  # (seconds up, batch status, lines finished)
    db: Database | None = None
    started = time.monotonic()
    try:
        while len([k for k in kills if k[1] not in TERMINAL]) < MIN_KILLS:
            assert len(kills) < MAX_KILLS, f"the batch ended before {MIN_KILLS} kills: {kills}"
            with serve_process(home, port, "--no-preload", env=env) as proc:
                wait_http(f"{base}/health", proc=proc)
                up_at = time.monotonic()
                if batch_id is None:
                    uploaded = httpx.post(
                        f"{base}/v1/files",
                        files={"file": ("in.jsonl", raw)},
                        data={"purpose": "batch"},
                    ).json()
                    batch_id = httpx.post(
                        f"{base}/v1/batches",
                        json={
                            "input_file_id": uploaded["id"],
                            "endpoint": "/v1/chat/completions",
                            "completion_window": "24h",
                        },
                    ).json()["id"]
                    db = Database(f"sqlite:///{home / 'freight.db'}")
                time.sleep(rng.uniform(0.0, 1.2))
                kill_group(proc)
                assert db is not None and batch_id is not None
                status, num_finished = batch_status(db, batch_id)
                kills.append((round(time.monotonic() - up_at, 2), status, num_finished))
        report(f"{len(kills)} SIGKILLs (seconds up, batch status, lines finished): {kills}")

        with serve_process(home, port, "--no-preload", env=env) as proc:
            wait_http(f"{base}/health", proc=proc)
            deadline = time.monotonic() + 120
            while (batch := httpx.get(f"{base}/v1/batches/{batch_id}").json())[
                "status"
            ] not in TERMINAL:
                assert time.monotonic() < deadline, f"batch stuck: {batch}"
                time.sleep(0.2)
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
            output = output_lines(client, batch["output_file_id"])
            errors = output_lines(client, batch["error_file_id"])
            all_batches = httpx.get(f"{base}/v1/batches").json()["data"]
        report(
            f"done in {time.monotonic() - started:.1f} s; "
            f"{len(output)} output lines, {len(errors)} error lines"
        )
    finally:
        if db is not None:
            db.dispose()

    assert batch["status"] == "completed"
    seen = collections.Counter(line["custom_id"] for line in output + errors)
    assert set(seen) == {line["custom_id"] for line in lines}  # none lost
    assert max(seen.values()) == 1, [c for c, n in seen.items() if n > 1]  # none twice
    counts = batch["request_counts"]
    assert counts == {"total": NUM_REQUESTS, "completed": len(output), "failed": len(errors)}
    assert all(line["response"]["status_code"] == 200 for line in output)
    # A request in flight at too many kills is given up on with a line that says so.
    for line in errors:
        assert "attempts" in line["error"]["message"], line
    assert all(b["status"] in TERMINAL for b in all_batches)  # no batch left stuck
    db = Database(f"sqlite:///{home / 'freight.db'}")
    try:
        with db.read() as conn:
            by_status = batch_requests.count_by_status(conn, batch["id"])
    finally:
        db.dispose()
    assert not set(by_status) & set(batch_requests.OPEN), by_status
