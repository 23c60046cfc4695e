"""SIGTERM `freight serve` mid-batch and start it again: nothing is lost or run twice.

The first server runs the real engine: its shutdown under SIGTERM, with requests in the
engine, is what is tested. What it left is read from the store between the two servers
(the batch still in progress, some requests answered, the rest queued). The second
server serves the same model name with the echo engine, which answers with the prompt:
so every output line says which server answered it, and the lines the real engine
answered before SIGTERM must be exactly those the store said were done. A second
real-engine start would only add half a minute.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import openai
import pytest

from freight.store import batches
from freight.store.db import Database
from freight.store.statuses import BatchStatus
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
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def wait_engine(base: str) -> None:
    wait_until(
        lambda: CHAT_MODEL in httpx.get(f"{base}/health").json()["engines"],
        timeout=600,
        interval=0.5,
        what="the engine to start",
    )


def test_sigterm_mid_batch_then_restart_completes_every_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # 48 lines: with 16 in flight, work is still queued whenever the 8th result is seen
    lines = [
        chat_line(f"req-{i}", f"Tell me a fact about the number {i}.", max_tokens=24, temperature=0)
        for i in range(48)
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
        wait_until(
            lambda: client.batches.retrieve(batch.id).request_counts.completed >= 8,
            timeout=300,
            interval=0.1,
            what="8 results",
        )
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 0, "SIGTERM must end the server cleanly"

    db = Database(f"sqlite:///{home / 'freight.db'}")
    with db.read() as conn:
        left = batches.get(conn, batch.id)
    db.dispose()
    assert left.status == BatchStatus.IN_PROGRESS
    assert 8 <= left.num_succeeded < len(lines) and left.num_errored == 0

    (home / "freight.toml").write_text(f'[[models]]\nname = "{CHAT_MODEL}"\nengine = "echo"\n')
    with serve_process(home, port, env=env) as second:
        wait_http(f"{base}/health", proc=second)
        batch = wait_for_batch(client, batch.id)
        assert batch.status == "completed"
        assert batch.request_counts.total == len(lines)
        assert (batch.request_counts.completed, batch.request_counts.failed) == (len(lines), 0)
        results = output_lines(client, batch.output_file_id)
    custom_ids = [r["custom_id"] for r in results]
    assert sorted(custom_ids) == sorted(x["custom_id"] for x in lines)  # none lost, none twice
    assert all(r["response"]["status_code"] == 200 for r in results)
    prompts = {x["custom_id"]: x["body"]["messages"][-1]["content"] for x in lines}
    by_real_engine = [
        r
        for r in results
        if r["response"]["body"]["choices"][0]["message"]["content"] != prompts[r["custom_id"]]
    ]
    assert len(by_real_engine) == left.num_succeeded  # answered before SIGTERM, kept, not rerun
