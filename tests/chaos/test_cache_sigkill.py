"""Chaos: `freight serve` SIGKILLed after the engine answered, before the answers were stored.

The result cache is the stored results (store/result_cache.py): a request's answer
becomes a cache entry in the transaction that records it. Here the worker buffers its
results for an hour (`flush_seconds`), so when the engine has answered every request
(its meter says so on /metrics) nothing is stored yet; the server is then SIGKILLed.
Started again, the batch must complete with every custom_id exactly once and nothing
served from a cache (there was none to serve), and a second run of the same file must
be answered entirely from the store: one cache entry per request, none lost, none twice.
"""

from __future__ import annotations

import collections
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from freight.store import batches
from freight.store.db import Database
from freight.store.schema import requests
from freight.store.statuses import RequestStatus
from tests.conftest import chat_line, free_port, serve_process, wait_http
from tests.sdk import output_lines
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

NUM_REQUESTS = 20
CONFIG = """
[[models]]
name = "echo"
engine = "echo"
delay_seconds = 0.02

[worker]
lease_seconds = 2
poll_seconds = 0.05
flush_seconds = {flush}
"""
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def engine_answers(base: str) -> int:
    """Batch requests the echo engine has finished, from the server's /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        labels = 'model="echo"' in line and 'kind="batch"' in line
        if line.startswith("freight_engine_requests_total{") and labels:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def run_to_end(base: str, batch_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        batch: dict[str, Any] = httpx.get(f"{base}/v1/batches/{batch_id}", timeout=10).json()
        return batch if batch["status"] in TERMINAL else None

    return wait_until(ended, timeout=120, interval=0.1, what=f"batch {batch_id} to end")


def create_batch(base: str, raw: bytes) -> str:
    uploaded = httpx.post(
        f"{base}/v1/files", files={"file": ("in.jsonl", raw)}, data={"purpose": "batch"}
    ).json()
    created = httpx.post(
        f"{base}/v1/batches",
        json={
            "input_file_id": uploaded["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ).json()
    return str(created["id"])


def test_a_sigkill_between_the_engines_answer_and_the_cache_write_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "freight.toml"
    env = {"FREIGHT_CONFIG": str(config)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lines = [
        chat_line(f"r{i}", f"label row {i}", model="echo", max_tokens=4, temperature=0)
        for i in range(NUM_REQUESTS)
    ]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()

    config.write_text(CONFIG.format(flush=3600))  # answers stay in memory
    with serve_process(home, port, "--no-preload", env=env) as proc:
        wait_http(f"{base}/health", proc=proc)
        batch_id = create_batch(base, raw)
        wait_until(
            lambda: engine_answers(base) >= NUM_REQUESTS,
            timeout=60,
            what="the engine to answer every request",
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

    db = Database(f"sqlite:///{home / 'freight.db'}")
    try:
        with db.read() as conn:
            stored = conn.execute(
                sa.select(sa.func.count()).where(
                    requests.c.batch_id == batch_id,
                    requests.c.status == RequestStatus.SUCCEEDED,
                )
            ).scalar_one()
        assert stored == 0  # killed between the engine's answers and their write

        config.write_text(CONFIG.format(flush=0.05))
        with serve_process(home, port, "--no-preload", env=env) as proc:
            wait_http(f"{base}/health", proc=proc)
            first = run_to_end(base, batch_id)
            second_id = create_batch(base, raw)
            second = run_to_end(base, second_id)
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
            first_out = output_lines(client, first["output_file_id"])
            second_out = output_lines(client, second["output_file_id"])
            second_errors = output_lines(client, second["error_file_id"])

        with db.read() as conn:
            first_record = batches.get(conn, batch_id)
            second_record = batches.get(conn, second_id)
            sources = collections.Counter(
                conn.execute(
                    sa.select(requests.c.cache_key).where(
                        requests.c.cache_key.is_not(None),
                        requests.c.status == RequestStatus.SUCCEEDED,
                        requests.c.cached_from.is_(None),
                    )
                ).scalars()
            )
    finally:
        db.dispose()

    assert first["status"] == second["status"] == "completed"
    expected_ids = {line["custom_id"] for line in lines}
    for out in (first_out, second_out):
        seen = collections.Counter(line["custom_id"] for line in out)
        assert set(seen) == expected_ids and max(seen.values()) == 1  # none lost, none twice
    assert second_errors == []
    assert first_record.num_from_cache == 0  # nothing was cached before the kill
    assert second_record.num_from_cache == NUM_REQUESTS  # every answer was stored once
    assert len(sources) == NUM_REQUESTS and set(sources.values()) == {1}
    by_id = {line["custom_id"]: line["response"]["body"] for line in first_out}
    assert all(line["response"]["body"] == by_id[line["custom_id"]] for line in second_out)
