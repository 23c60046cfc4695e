"""Quotas under concurrent clients, over HTTP: exactly the quota's worth is accepted.

Ten clients start at the same moment (a barrier) against an echo server with no worker,
so nothing finishes and frees room meanwhile. Before quotas were checked and recorded
in one transaction, about half of the ten got through.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from freight.config import QuotaLimits, QuotaSettings
from freight.service.runtime import Service
from freight.store import files, project_usage
from freight.store.schema import batches as batches_table
from freight.store.schema import files as files_table
from tests.conftest import LiveServer, chat_line, make_settings
from tests.integration.test_dashboard_pages import signed_in

QUEUE_LIMIT = 10
STORAGE_LIMIT = 100_000
FILE_BYTES = 30_000
NUM_CLIENTS = 10
QUOTAS = QuotaSettings(
    default=QuotaLimits(max_queued_requests=QUEUE_LIMIT, max_stored_bytes=STORAGE_LIMIT)
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """No worker: queued batches stay queued for the whole test."""
    settings = make_settings(tmp_path / "home", quotas=QUOTAS)
    live = LiveServer(Service(settings, with_worker=False)).start()
    yield live
    live.stop()


def keyed(server: LiveServer, project: str) -> dict[str, str]:
    _, key = server.svc.keys.create(project)
    return {"authorization": f"Bearer {key}"}


def all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    responses: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        responses[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, httpx.Response) for r in responses), responses
    return responses


def assert_exactly(responses: list[httpx.Response], num_accepted: int, quota: str) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * num_accepted + [429] * (len(responses) - num_accepted), [
        r.text for r in responses if r.status_code not in (200, 429)
    ]
    for refused in (r for r in responses if r.status_code == 429):
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        error = body["error"]
        if "type" in body:  # Anthropic's shape
            assert body["type"] == "error" and error["type"] == "rate_limit_error"
        else:
            assert error["type"] == "rate_limit_error" and error["code"] == quota
        assert f"[quotas] {quota}" in error["message"]


def jsonl(num_lines: int, pad: int = 0) -> bytes:
    lines = [chat_line(f"r{i}", "hi" + "x" * pad, model="echo") for i in range(num_lines)]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(server: LiveServer, headers: dict[str, str], data: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("in.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
        headers=headers,
        timeout=60,
    )


def num_rows(server: LiveServer, table: sa.Table, **where: str) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with server.svc.db.read() as conn:
        return int(conn.execute(query).scalar_one())


def test_concurrent_batch_creates_queue_exactly_the_quota(server: LiveServer) -> None:
    headers = keyed(server, "racer")
    file_ids = [upload(server, headers, jsonl(3)).json()["id"] for _ in range(NUM_CLIENTS)]
    body = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}

    def create(file_id: str) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(
            f"{server.base_url}/v1/batches",
            json={**body, "input_file_id": file_id},
            headers=headers,
            timeout=60,
        )

    responses = all_at_once([create(f) for f in file_ids])
    assert_exactly(responses, QUEUE_LIMIT // 3, "max_queued_requests")
    assert num_rows(server, batches_table, project="racer") == QUEUE_LIMIT // 3


def test_concurrent_message_batch_creates_queue_exactly_the_quota(server: LiveServer) -> None:
    headers = {"x-api-key": keyed(server, "racer")["authorization"][7:]}
    params = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    body = {"requests": [{"custom_id": f"m{i}", "params": params} for i in range(3)]}

    def create() -> httpx.Response:
        return httpx.post(
            f"{server.base_url}/v1/messages/batches", json=body, headers=headers, timeout=60
        )

    responses = all_at_once([create] * NUM_CLIENTS)
    assert_exactly(responses, QUEUE_LIMIT // 3, "max_queued_requests")
    # the refused ones left neither a body blob nor a storage hold behind
    kept = {r.json()["id"] for r in responses if r.status_code == 200}
    names = {p.name for p in server.svc.settings.files_dir.iterdir()}
    assert names == {f"{batch_id}.requests.json" for batch_id in kept}
    assert num_rows(server, files_table, purpose=files.RESERVED) == 0


def test_concurrent_uploads_store_exactly_the_quota(server: LiveServer) -> None:
    headers = keyed(server, "hoarder")
    data = jsonl(1, pad=FILE_BYTES)[:FILE_BYTES]  # content is not checked at upload
    assert len(data) == FILE_BYTES
    responses = all_at_once([lambda: upload(server, headers, data)] * NUM_CLIENTS)
    assert_exactly(responses, STORAGE_LIMIT // FILE_BYTES, "max_stored_bytes")
    listed = httpx.get(f"{server.base_url}/v1/files", headers=headers).json()["data"]
    assert len(listed) == STORAGE_LIMIT // FILE_BYTES
    with server.svc.db.read() as conn:
        assert project_usage.stored_bytes(conn, "hoarder") == 3 * FILE_BYTES
    assert num_rows(server, files_table, purpose=files.RESERVED) == 0
    assert len(list(server.svc.settings.files_dir.iterdir())) == 3  # no refused blob left


def test_an_upload_refused_after_its_hold_gives_the_bytes_back(server: LiveServer) -> None:
    headers = keyed(server, "careless")
    response = httpx.post(
        f"{server.base_url}/v1/files",
        files={"file": ("in.jsonl", jsonl(3), "application/jsonl")},
        data={"purpose": "not-a-purpose"},
        headers=headers,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
    with server.svc.db.read() as conn:
        assert project_usage.stored_bytes(conn, "careless") == 0
    assert num_rows(server, files_table) == 0
    assert list(server.svc.settings.files_dir.iterdir()) == []
    # an invalid Message Batch body: its hold and its blob go too
    bad = httpx.post(
        f"{server.base_url}/v1/messages/batches",
        json={"requests": [{"custom_id": "a"}]},
        headers={"x-api-key": headers["authorization"][7:]},
    )
    assert bad.status_code == 400, bad.text
    assert num_rows(server, files_table) == 0
    assert list(server.svc.settings.files_dir.iterdir()) == []


def test_a_client_that_goes_away_mid_upload_gives_the_hold_back(server: LiveServer) -> None:
    headers = keyed(server, "flaky")
    boundary = "cut0ff"
    head = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.jsonl"\r\n'
        "content-type: application/jsonl\r\n\r\n"
    ).encode()
    request = (
        "POST /v1/files HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: {headers['authorization']}\r\n"
        f"content-type: multipart/form-data; boundary={boundary}\r\n"
        "content-length: 60000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request + head + b"x" * 1000)
        deadline = time.monotonic() + 30
        while num_rows(server, files_table, purpose=files.RESERVED) == 0:  # the hold is made
            assert time.monotonic() < deadline, "no storage hold appeared"
            time.sleep(0.02)
        with server.svc.db.read() as conn:
            assert project_usage.stored_bytes(conn, "flaky") == 60000  # the declared size
    deadline = time.monotonic() + 30
    while num_rows(server, files_table) != 0:  # released once the server sees the hang-up
        assert time.monotonic() < deadline, "the hold of an abandoned upload was kept"
        time.sleep(0.05)
    assert list(server.svc.settings.files_dir.iterdir()) == []


def test_the_dashboards_upload_and_create_keeps_the_queue_quota(server: LiveServer) -> None:
    _, key = server.svc.keys.create("clicker")
    client = signed_in(server, key)
    form = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
    created = client.post(
        "/ui/batches", files={"file": ("in.jsonl", jsonl(9), "application/jsonl")}, data=form
    )
    assert created.status_code == 303, created.text
    refused = client.post(
        "/ui/batches", files={"file": ("in.jsonl", jsonl(3), "application/jsonl")}, data=form
    )
    assert refused.status_code == 429 and "max_queued_requests" in refused.text
    # the refused upload's file, hold and blob are gone; the accepted one's stay
    assert num_rows(server, files_table) == 1
    assert len(list(server.svc.settings.files_dir.iterdir())) == 1
    client.close()
