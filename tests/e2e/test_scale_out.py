"""Scale-out on PostgreSQL: one API-only process and three worker processes share one batch.

`freight serve --no-worker` takes the upload and the batch through the official SDK;
three `freight worker` processes (each with its own home, as on separate machines, the
files in one shared directory) claim the requests under leases. One worker is killed
with SIGKILL while it holds leases: the others reclaim its requests once the leases run
out, every custom_id ends in exactly one line, and the batch is finalised exactly once.
The echo engine with a small per-request delay serves the requests, so the work spreads
over the workers; what is tested is Freight's coordination, not generation.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from freight.store import batches
from freight.store.db import Database
from freight.store.schema import requests as requests_table
from tests.conftest import chat_line, wait_for_batch
from tests.deployment import api_only_deployment
from tests.sdk import output_lines
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

NUM_REQUESTS = 3000
CONFIG = """
[[models]]
name = "echo"
engine = "echo"
delay_seconds = 0.02

[worker]
max_in_flight = 16
lease_seconds = 5
poll_seconds = 0.05
"""


def owners_running(db: Database, batch_id: str) -> dict[str, int]:
    """Leased requests per worker (lease owner) right now."""
    query = (
        sa.select(requests_table.c.lease_owner, sa.func.count())
        .where(requests_table.c.batch_id == batch_id, requests_table.c.status == "running")
        .group_by(requests_table.c.lease_owner)
    )
    with db.read() as conn:
        return {owner: int(n) for owner, n in conn.execute(query).all()}


def test_three_workers_share_a_batch_and_survive_one_killed(tmp_path: Path) -> None:
    lines = [chat_line(f"r{i}", f"request number {i}", model="echo") for i in range(NUM_REQUESTS)]
    with api_only_deployment(tmp_path, CONFIG, database="freight_scale") as deployment:
        workers = [deployment.worker(f"worker{i}") for i in range(3)]
        # All three at work before the batch exists, however slowly each process starts:
        # else the first could run half of it before the last one looks.
        logs = [deployment.log(f"worker{i}") for i in range(3)]
        wait_until(
            lambda: all("started (max in flight" in log.read_text() for log in logs),
            timeout=120,
            what="three workers to start",
        )

        client = deployment.openai()
        raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("in.jsonl", raw), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

        # Midway, with all three workers holding leases: kill the first one outright.
        db = Database(deployment.database_url)
        deployment.stack.callback(db.dispose)
        victim = workers[0]
        victim_tag = f"-{victim.pid}-"
        deadline = time.monotonic() + 300
        while True:
            running = owners_running(db, batch.id)
            with db.read() as conn:
                num_finished = batches.get(conn, batch.id).num_finished
            victim_holds = [o for o in running if victim_tag in o]
            if len(running) == 3 and victim_holds and num_finished >= 500:
                break
            assert num_finished < NUM_REQUESTS // 2, "the batch ran too far before the kill"
            assert all(w.poll() is None for w in workers), "a worker exited"
            assert time.monotonic() < deadline, f"workers never all ran: {running}"
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        with db.read() as conn:
            orphaned = set(
                conn.execute(
                    sa.select(requests_table.c.id).where(
                        requests_table.c.batch_id == batch.id,
                        requests_table.c.lease_owner == victim_holds[0],
                    )
                ).scalars()
            )

        batch = wait_for_batch(client, batch.id, timeout=600)
        assert batch.status == "completed"
        assert batch.request_counts.completed == NUM_REQUESTS
        assert batch.request_counts.failed == 0 and batch.error_file_id is None

        output = output_lines(client, batch.output_file_id)
        custom_ids = [line["custom_id"] for line in output]
        assert len(custom_ids) == NUM_REQUESTS
        assert set(custom_ids) == {f"r{i}" for i in range(NUM_REQUESTS)}  # each exactly once

        with db.read() as conn:
            history = [(e["from_status"], e["to_status"]) for e in batches.events(conn, batch.id)]
            reclaimed = conn.execute(
                sa.select(
                    requests_table.c.id, requests_table.c.status, requests_table.c.attempts
                ).where(requests_table.c.id.in_(orphaned))
            ).all()
        assert history == [
            (None, "validating"),
            ("validating", "in_progress"),
            ("in_progress", "finalizing"),
            ("finalizing", "completed"),
        ]  # finalised once, by one worker
        # The killed worker's leased requests ran again elsewhere, and count once.
        assert orphaned and len(reclaimed) == len(orphaned)
        assert all(status == "succeeded" and attempts >= 2 for _, status, attempts in reclaimed)
        assert all(w.poll() is None for w in workers[1:])
