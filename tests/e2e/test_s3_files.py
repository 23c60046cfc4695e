"""Files on an S3-compatible store, end to end: the official SDKs against the real server
whose file contents live in a bucket (moto in server mode on a loopback port).

The echo engine serves these: what is tested is where file bodies live (uploads, input
read by the worker, output and error files, Message Batch bodies and results, downloads,
deletes), which does not depend on the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from freight.service.runtime import Service
from freight.store import files
from tests.conftest import (
    LiveServer,
    chat_line,
    make_settings,
    wait_for_batch,
    wait_for_message_batch,
)
from tests.s3 import new_bucket, s3_server
from tests.sdk import message_batch_results, output_lines


@pytest.fixture
def s3_server_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LiveServer]:
    with s3_server(monkeypatch) as s3:
        bucket = new_bucket(s3)
        settings = make_settings(tmp_path / "home", files_url=f"s3://{bucket}/files", s3=s3)
        server = LiveServer(Service(settings)).start()
        try:
            yield server
        finally:
            server.stop()


def objects(server: LiveServer) -> set[str]:
    store = server.svc.blobs
    client = boto3.client("s3", endpoint_url=server.svc.settings.s3.endpoint_url)
    listing = client.list_objects_v2(Bucket=store.bucket)  # type: ignore[attr-defined]
    return {item["Key"] for item in listing.get("Contents", [])}


def key(server: LiveServer, file_id: str) -> str:
    with server.svc.db.read() as conn:
        return f"files/{files.get(conn, file_id).blob}"


def test_a_batch_reads_its_input_from_and_writes_its_results_to_the_bucket(
    s3_server_app: LiveServer, tmp_path: Path
) -> None:
    client = s3_server_app.openai()
    lines = [chat_line(f"r{i}", f"say {i}", model="echo") for i in range(20)]
    lines.append(chat_line("bad", "x", model="echo", max_tokens=0))
    raw = "".join(json.dumps(x) + "\n" for x in lines).encode()
    uploaded = client.files.create(file=("in.jsonl", raw), purpose="batch")
    assert key(s3_server_app, uploaded.id) in objects(s3_server_app)
    assert client.files.content(uploaded.id).content == raw

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id, timeout=120)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (20, 1)
    output_key = key(s3_server_app, batch.output_file_id)
    assert {output_key, key(s3_server_app, batch.error_file_id)} <= objects(s3_server_app)
    output = output_lines(client, batch.output_file_id)
    errors = output_lines(client, batch.error_file_id)
    assert sorted(x["custom_id"] for x in output) == sorted(f"r{i}" for i in range(20))
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"] == "say 0"
    assert [(x["custom_id"], x["response"]["status_code"]) for x in errors] == [("bad", 400)]

    client.files.delete(batch.output_file_id)
    assert output_key not in objects(s3_server_app)


def test_a_message_batch_keeps_its_body_and_results_in_the_bucket(
    s3_server_app: LiveServer,
) -> None:
    client = s3_server_app.anthropic()
    params = {"model": "echo", "max_tokens": 8}
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"m{i}",
                "params": {**params, "messages": [{"role": "user", "content": f"hi {i}"}]},
            }
            for i in range(5)
        ]
    )
    wait_for_message_batch(client, batch.id, timeout=120)
    assert f"files/{batch.id}.results.jsonl" in objects(s3_server_app)
    assert f"files/{batch.id}.requests.json" not in objects(s3_server_app)
    results = {r.custom_id: r.result for r in message_batch_results(client, batch.id)}
    assert sorted(results) == [f"m{i}" for i in range(5)]
    assert all(r.type == "succeeded" for r in results.values())
    client.messages.batches.delete(batch.id)
    assert f"files/{batch.id}.results.jsonl" not in objects(s3_server_app)
