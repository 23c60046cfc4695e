"""Fair share between projects: one project's huge batch does not starve another's small one.

Project A submits 5,000 requests, then project B submits 20, on an engine that holds 32
at a time (echo engine, 20 ms a request). Served in deadline order, B would wait behind
all of A's; shared between projects, B gets half of every refill and finishes while
most of A's batch is still queued.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from freight.config import ModelSettings, WorkerSettings
from freight.service.runtime import Service
from tests.conftest import LiveServer, chat_line, make_settings, wait_for_batch

NUM_A = 5000
NUM_B = 20


@pytest.fixture
def shared_engine(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "home",
        models=[ModelSettings(name="echo", engine="echo", delay_seconds=0.02)],
        worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, max_in_flight=32),
    )
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


def submit(client: openai.OpenAI, project: str, num: int) -> str:
    lines = [chat_line(f"{project}-{i}", f"hello {i}", model="echo") for i in range(num)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=(f"{project}.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


def test_a_small_batch_finishes_first_beside_another_projects_huge_one(
    shared_engine: LiveServer,
) -> None:
    clients = {}
    for project in ("a", "b"):
        _, key = shared_engine.svc.keys.create(project)
        clients[project] = openai.OpenAI(
            base_url=f"{shared_engine.base_url}/v1", api_key=key, max_retries=0
        )
    a, b = clients["a"], clients["b"]
    batch_a = submit(a, "a", NUM_A)
    deadline = time.monotonic() + 120
    while a.batches.retrieve(batch_a).request_counts.completed < 64:  # A is running
        assert time.monotonic() < deadline, "batch A did not start"
        time.sleep(0.02)
    batch_b = submit(b, "b", NUM_B)
    done_b = wait_for_batch(b, batch_b, timeout=300)
    at_b_end = a.batches.retrieve(batch_a)
    assert done_b.status == "completed" and done_b.request_counts.completed == NUM_B
    assert at_b_end.status == "in_progress"
    finished_a = at_b_end.request_counts.completed + at_b_end.request_counts.failed
    assert finished_a < NUM_A // 2, f"A had {finished_a} of {NUM_A} done when B ended"
    done_a = wait_for_batch(a, batch_a, timeout=600)
    assert done_a.request_counts.completed == NUM_A
    assert (done_b.completed_at or 0) <= (done_a.completed_at or 0)
    for client in clients.values():
        client.close()
