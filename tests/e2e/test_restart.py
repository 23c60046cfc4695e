"""SIGTERM `freight serve` mid-batch and start it again: nothing is lost or run twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import (
    CHAT_MODEL,
    chat_line,
    free_port,
    serve_process,
    wait_for_batch,
    wait_http,
    write_jsonl,
)
from tests.sdk import output_lines

pytestmark = pytest.mark.slow


def wait_engine(base: str) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while CHAT_MODEL not in httpx.get(f"{base}/health").json()["engines"]:
        assert time.monotonic() < deadline, "engine did not start"
        time.sleep(0.5)


def test_sigterm_mid_batch_then_restart_completes_every_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lines = [
        chat_line(f"req-{i}", f"Tell me a fact about the number {i}.", max_tokens=48, temperature=0)
        for i in range(96)
    ]
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    # The SDK's own retries, as any user has them: a poll that meets a dropped keep-alive
    # connection is retried (a server that is down fails every try and the test).
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=2)

    # A small in-flight window and a short drain, so SIGTERM leaves work unfinished.
    env = {"FREIGHT_WORKER__MAX_IN_FLIGHT": "16", "FREIGHT_WORKER__DRAIN_SECONDS": "1"}
    with serve_process(home, port, env=env) as first:
        wait_http(f"{base}/health", proc=first)
        wait_engine(base)
        uploaded = client.files.create(file=path, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 300
        while client.batches.retrieve(batch.id).request_counts.completed < 8:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 0, "SIGTERM must end the server cleanly"

    with serve_process(home, port, env=env) as second:
        wait_http(f"{base}/health", proc=second)
        before = client.batches.retrieve(batch.id)
        assert before.status == "in_progress"
        assert 8 <= before.request_counts.completed < len(lines)
        batch = wait_for_batch(client, batch.id)
        assert batch.status == "completed"
        assert batch.request_counts.total == len(lines)
        assert (batch.request_counts.completed, batch.request_counts.failed) == (len(lines), 0)
        results = output_lines(client, batch.output_file_id)
    custom_ids = [r["custom_id"] for r in results]
    assert sorted(custom_ids) == sorted(x["custom_id"] for x in lines)  # none lost, none twice
    assert all(r["response"]["status_code"] == 200 for r in results)
