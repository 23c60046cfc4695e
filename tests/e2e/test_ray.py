"""Ray: `freight run --ray` on a local Ray cluster, and a worker handing a batch to Ray.

The real engine runs in an engine actor, fed blocks of two requests, and must give the
same lines as `freight run` without Ray (fp32: greedy output does not depend on which
requests share an engine). One actor: two real engines starting at once on a 2-core
machine took most of a minute and a half; how blocks spread over several actors is
engine-independent, and the hand-off test checks it with two echo actors, along with
the store as the source of truth (results in the requests rows as they come, counts,
finalisation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from freight.store.db import Database
from freight.store.schema import requests as requests_table
from tests.conftest import (
    LiveServer,
    chat_line,
    free_port,
    make_settings,
    run_cli,
    run_offline,
    serve_process,
    wait_for_batch,
    wait_http,
    write_jsonl,
)
from tests.sdk import batch_lines, output_lines
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "Say hello in Spanish.",
    "What is 2 + 2?",
    "Name a fruit that is yellow.",
    "What colour is the sky on a clear day?",
    "Name an animal that can fly.",
    "What is the opposite of cold?",
]


def comparable(path: Path) -> list[dict[str, Any]]:
    """The output lines without what differs between any two runs of the same file.

    Ids and `created` are new per run. `cached_tokens` counts prompt tokens found in an
    engine's prefix cache, which depends on which requests ran on the same engine
    before: a scheduling fact, not part of the answer. Everything else must be equal.
    """
    lines = batch_lines(path.read_text())
    for line in lines:
        del line["id"]
        if line["response"] is not None:
            del line["response"]["request_id"]
            body = line["response"]["body"]
            for key in ("id", "created"):
                body.pop(key, None)
            if "usage" in body:
                del body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return lines


def test_freight_run_on_ray_gives_the_same_lines_as_freight_run(
    real_server: LiveServer, tmp_path: Path
) -> None:
    lines: list[Any] = [
        chat_line(f"q{i}", q, max_tokens=16, temperature=0) for i, q in enumerate(QUESTIONS)
    ]
    lines.insert(3, chat_line("bad-body", "x", max_tokens=0))  # a per-line 400
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    home = tmp_path / "home"
    # the plain run on the session's engine (freight run's own: test_cli)
    plain, printed = run_offline(real_server, make_settings(home), source, tmp_path / "plain.jsonl")
    assert plain == 3, printed  # finished, one error line
    on_ray = run_cli(
        "run",
        str(source),
        "-o",
        str(tmp_path / "ray.jsonl"),
        "--home",
        str(home),
        "--ray",
        env={"FREIGHT_RAY__NUM_ACTORS": "1", "FREIGHT_RAY__BATCH_SIZE": "2"},
    )
    assert on_ray.returncode == 3, on_ray.stderr
    assert "completed: 8 succeeded, 1 failed" in on_ray.stderr
    expected = comparable(tmp_path / "plain.jsonl")
    assert comparable(tmp_path / "ray.jsonl") == expected
    assert [x["custom_id"] for x in expected] == [f"q{i}" for i in range(8)] + ["bad-body"]
    assert expected[-1]["response"]["status_code"] == 400


def test_an_invalid_file_fails_validation_before_any_cluster_starts(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "dup.jsonl", [chat_line("a", "x", model="echo"), chat_line("a", "y")]
    )
    result = run_cli(
        "run", str(source), "-o", str(tmp_path / "out.jsonl"), "--home", str(tmp_path), "--ray"
    )
    assert result.returncode == 1
    assert "duplicate_custom_id" in result.stderr and "ray" not in result.stderr.lower()


def test_a_worker_hands_a_large_batch_to_ray_and_the_store_follows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text(
        '[[models]]\nname = "echo"\nengine = "echo"\ndelay_seconds = 0.02\n\n'
        '[[models]]\nname = "slow"\nengine = "echo"\ndelay_seconds = 0.5\n\n'
        '[ray]\naddress = "local"\nmin_requests = 100\nnum_actors = 2\nbatch_size = 16\n'
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with serve_process(home, port, "--no-preload") as proc:
        wait_http(f"{base_url}/health", proc=proc)
        import openai

        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="test")

        def create(num: int, model: str = "echo") -> Any:
            raw = "".join(
                json.dumps(chat_line(f"r{i}", f"say {i}", model=model)) + "\n" for i in range(num)
            ).encode()
            uploaded = client.files.create(file=("in.jsonl", raw), purpose="batch")
            return client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )

        def run(num: int) -> Any:
            return wait_for_batch(client, create(num).id, timeout=600)

        large = run(400)
        assert large.status == "completed" and large.request_counts.completed == 400
        output = output_lines(client, large.output_file_id)
        assert sorted(x["custom_id"] for x in output) == sorted(f"r{i}" for i in range(400))
        # Every request ran in the Ray actors: this process never started an engine.
        assert httpx.get(f"{base_url}/health").json()["engines"] == []

        # Cancelled while on Ray: the run stops at its next block, the rest is cancelled.
        slow = create(400, model="slow")
        wait_until(
            lambda: client.batches.retrieve(slow.id).request_counts.completed > 0,
            timeout=300,
            what="the first results from Ray",
        )
        client.batches.cancel(slow.id)
        slow = wait_for_batch(client, slow.id, timeout=600)
        assert slow.status == "cancelled"
        lines = output_lines(client, slow.output_file_id) + output_lines(client, slow.error_file_id)
        assert sorted(x["custom_id"] for x in lines) == sorted(f"r{i}" for i in range(400))
        cancelled = [x for x in lines if x["error"] and x["error"]["code"] == "batch_cancelled"]
        assert 0 < len(cancelled) == slow.request_counts.failed

        small = run(10)  # under min_requests: the worker runs it on its own engine
        assert small.status == "completed" and small.request_counts.completed == 10
        assert httpx.get(f"{base_url}/health").json()["engines"] == ["echo"]

    db = Database(f"sqlite:///{(home / 'freight.db').resolve()}")
    with db.read() as conn:
        groups = conn.execute(
            sa.select(sa.func.count(sa.distinct(requests_table.c.finished_at))).where(
                requests_table.c.batch_id == large.id
            )
        ).scalar_one()
    db.dispose()
    # Results were written back block by block as the actors finished them (16 per
    # block), not once at the end: the batch's counts moved while it ran.
    assert groups >= 400 // 16
