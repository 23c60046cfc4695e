"""`freight worker --models` on PostgreSQL: each of two workers runs only its model's batch.

`freight serve --no-worker` takes three batches through the official SDK, one per echo
model; worker A is limited to `echo-a`, worker B to `echo-b`, and no worker serves
`echo-c`. With worker A alone, echo-a's batch completes and the others stay queued;
then worker B runs echo-b's batch, and echo-c's stays queued.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from freight.store import batch_requests
from freight.store.db import Database
from freight.store.statuses import RequestStatus
from tests.conftest import chat_line, wait_for_batch
from tests.deployment import api_only_deployment

pytestmark = pytest.mark.slow

NUM_REQUESTS = 200
CONFIG = """
[[models]]
name = "echo-a"
engine = "echo"
delay_seconds = 0.01

[[models]]
name = "echo-b"
engine = "echo"
delay_seconds = 0.01

[[models]]
name = "echo-c"
engine = "echo"

[worker]
max_in_flight = 16
poll_seconds = 0.05
"""


def queued(db: Database, batch_id: str) -> int:
    """Requests of the batch still waiting for a worker."""
    with db.read() as conn:
        counts = batch_requests.count_by_status(conn, batch_id)
    assert set(counts) <= {RequestStatus.QUEUED, RequestStatus.SUCCEEDED}
    return counts.get(RequestStatus.QUEUED, 0)


def wait_for_status(client: Any, batch_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (now := client.batches.retrieve(batch_id).status) != status:
        assert time.monotonic() < deadline, f"batch {batch_id} stayed {now}, not {status}"
        time.sleep(0.05)


def test_workers_limited_by_model_claim_only_their_models_requests(tmp_path: Path) -> None:
    with api_only_deployment(tmp_path, CONFIG, database="freight_models") as deployment:
        db = Database(deployment.database_url)
        deployment.stack.callback(db.dispose)
        worker_a = deployment.worker("wa", "--models", "echo-a")
        client = deployment.openai()
        created = {}
        for model in ("echo-a", "echo-b", "echo-c"):
            lines = [chat_line(f"r{i}", f"request {i}", model=model) for i in range(NUM_REQUESTS)]
            raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
            uploaded = client.files.create(file=(f"{model}.jsonl", raw), purpose="batch")
            created[model] = client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            ).id

        # Worker A alone: it ingests all three batches but runs echo-a's requests only.
        done_a = wait_for_batch(client, created["echo-a"], timeout=300)
        assert done_a.status == "completed"
        assert done_a.request_counts.completed == NUM_REQUESTS
        for model in ("echo-b", "echo-c"):
            wait_for_status(client, created[model], "in_progress")
            assert queued(db, created[model]) == NUM_REQUESTS

        # Worker B joins and runs echo-b's; nobody serves echo-c.
        worker_b = deployment.worker("wb", "--models", "echo-b")
        done_b = wait_for_batch(client, created["echo-b"], timeout=300)
        assert done_b.status == "completed"
        assert done_b.request_counts.completed == NUM_REQUESTS
        assert queued(db, created["echo-c"]) == NUM_REQUESTS
        assert worker_a.poll() is None and worker_b.poll() is None
