"""Hardening over HTTP: body size limits on every route, upload names, CORS, quotas, and
keys kept out of the logs.

Echo servers with small limits; the quota windows move on a hand-driven clock, so
"within the window" and "after the window" are what the test says, not how fast it runs.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from freight.config import LimitSettings, QuotaLimits, QuotaSettings, SecuritySettings
from freight.service.runtime import Service
from freight.store import api_keys, batches
from tests.conftest import LiveServer, chat_line, make_settings
from tests.waiting import ManualClock

MAX_BODY = 64 * 1024
MAX_FILE = 256 * 1024
WINDOW = 60.0


def chat(model: str = "echo", content: str = "hello") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def message(content: str = "hello") -> dict[str, object]:
    return {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": content}]}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "home",
        security=SecuritySettings(max_body_bytes=MAX_BODY),
        limits=LimitSettings(max_file_bytes=MAX_FILE, max_message_batch_bytes=MAX_FILE),
    )
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


# --- body limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_bodies_get_413_in_each_apis_shape(limited: LiveServer, declared: bool) -> None:
    big = json.dumps(chat(content="x" * (2 * MAX_BODY))).encode()

    def send(path: str, data: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        content: bytes | Iterator[bytes] = data
        if not declared:  # streamed without a length: cut off while it arrives
            content = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
        return httpx.post(limited.base_url + path, content=content, headers=headers)

    for path in ("/v1/chat/completions", "/v1/batches", "/v1/embeddings", "/v1/responses"):
        response = send(path, big)
        assert response.status_code == 413, path
        error = response.json()["error"]
        assert f"limit of {MAX_BODY} bytes" in error["message"]
    response = send("/v1/messages", json.dumps(message("x" * 2 * MAX_BODY)).encode())
    assert response.status_code == 413
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
    # under the limit, the same routes work
    assert send("/v1/chat/completions", json.dumps(chat()).encode()).status_code == 200


def test_uploads_and_message_batches_keep_their_own_larger_limits(limited: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{limited.base_url}/v1", api_key="x", max_retries=0)
    lines = [chat_line(f"r{i}", "y" * 1000, model="echo") for i in range(100)]  # ~110 KB
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert MAX_BODY < len(data) < MAX_FILE
    assert client.files.create(file=("ok.jsonl", io.BytesIO(data)), purpose="batch").bytes == len(
        data
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", io.BytesIO(data * 3)), purpose="batch")
    assert caught.value.status_code == 413
    sdk = anthropic.Anthropic(base_url=limited.base_url, api_key="x", max_retries=0)
    requests = [{"custom_id": f"r{i}", "params": message("y" * 1000)} for i in range(100)]
    assert sdk.messages.batches.create(requests=requests).id  # type: ignore[arg-type]
    with pytest.raises(anthropic.APIStatusError) as too_big:
        sdk.messages.batches.create(requests=requests * 3)  # type: ignore[arg-type]
    assert too_big.value.status_code == 413
    client.close()
    sdk.close()


# --- upload names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/data.jsonl", "data.jsonl"),
        ("bad\x00name\x07\x1b[31m\x7f.jsonl", "badname[31m.jsonl"),
        ("rtl\u202egnp.jsonl", "rtlgnp.jsonl"),
        ("..", "upload.jsonl"),
    ],
)
def test_upload_names_lose_paths_and_control_characters(
    echo_server: LiveServer, sent: str, stored: str
) -> None:
    data = json.dumps(chat_line("a", "hi", model="echo")).encode() + b"\n"
    # Built by hand: HTTP clients percent-encode such names, an attacker's need not.
    boundary = "x7f3boundary"
    body = (
        (
            f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\ncontent-disposition: form-data; name="file"; '
            f'filename="{sent}"\r\ncontent-type: application/jsonl\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = httpx.post(
        f"{echo_server.base_url}/v1/files",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == stored
    blobs = echo_server.svc.settings.files_dir
    assert all(p.resolve().is_relative_to(blobs.resolve()) for p in blobs.rglob("*"))
    download = httpx.get(f"{echo_server.base_url}/v1/files/{response.json()['id']}/content")
    assert download.content == data
    assert "/" not in download.headers["content-disposition"]


# --- CORS -----------------------------------------------------------------------------------


def test_cors_is_off_unless_origins_are_configured(echo_server: LiveServer, tmp_path: Path) -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    response = httpx.options(f"{echo_server.base_url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    settings = make_settings(
        tmp_path / "cors", security=SecuritySettings(cors_origins=["https://app.example"])
    )
    server = LiveServer(Service(settings)).start()
    try:
        response = httpx.options(f"{server.base_url}/v1/chat/completions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = {**preflight, "origin": "https://evil.example"}
        response = httpx.options(f"{server.base_url}/v1/chat/completions", headers=other)
        assert "access-control-allow-origin" not in response.headers
    finally:
        server.stop()


# --- quotas ---------------------------------------------------------------------------------


QUOTAS = QuotaSettings(
    window_seconds=WINDOW,
    default=QuotaLimits(requests_per_minute=3, max_queued_requests=5, max_stored_bytes=4000),
    projects={"thrifty": QuotaLimits(requests_per_minute=None, tokens_per_minute=10)},
)


@pytest.fixture
def quota_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def quota_server(tmp_path: Path, quota_clock: ManualClock) -> Iterator[LiveServer]:
    svc = Service(make_settings(tmp_path / "home", quotas=QUOTAS))
    svc.quotas.clock = quota_clock  # a window ends only when the test advances the clock
    server = LiveServer(svc).start()
    yield server
    server.stop()


@pytest.fixture
def idle_quota_server(tmp_path: Path) -> Iterator[LiveServer]:
    """No worker: batches stay queued."""
    settings = make_settings(tmp_path / "home", quotas=QUOTAS)
    server = LiveServer(Service(settings, with_worker=False)).start()
    yield server
    server.stop()


def keyed(server: LiveServer, project: str) -> dict[str, str]:
    _, key = server.svc.keys.create(project)
    return {"authorization": f"Bearer {key}"}


def assert_429(response: httpx.Response, quota: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    message = body["error"]["message"]
    assert f"[quotas] {quota}" in message, message


def until_refused(
    url: str, body: dict[str, object], headers: dict[str, str], max_calls: int = 50
) -> tuple[list[httpx.Response], httpx.Response]:
    """Call until a non-200 answer: (the accepted responses, the refusal)."""
    accepted = []
    for _ in range(max_calls):
        response = httpx.post(url, json=body, headers=headers)
        if response.status_code != 200:
            return accepted, response
        accepted.append(response)
    raise AssertionError(f"{max_calls} calls and no refusal")


def test_requests_per_minute_quota_then_the_window_passes(
    quota_server: LiveServer, quota_clock: ManualClock
) -> None:
    headers = keyed(quota_server, "busy")
    url = f"{quota_server.base_url}/v1/chat/completions"
    accepted, refused = until_refused(url, chat(), headers)
    assert len(accepted) == 3  # 3 a window
    assert_429(refused, "requests_per_minute")
    anthropic_over = httpx.post(
        f"{quota_server.base_url}/v1/messages", json=message(), headers=headers
    )
    assert anthropic_over.status_code == 429  # the same window, on the Anthropic path
    assert anthropic_over.json()["error"]["type"] == "rate_limit_error"
    quota_clock.advance(WINDOW)
    assert httpx.post(url, json=chat(), headers=headers).status_code == 200
    # another project has its own count
    assert httpx.post(url, json=chat(), headers=keyed(quota_server, "idle")).status_code == 200


def test_tokens_per_minute_quota_with_a_per_project_override(
    quota_server: LiveServer, quota_clock: ManualClock
) -> None:
    headers = keyed(quota_server, "thrifty")  # no request quota, 10 tokens a window
    url = f"{quota_server.base_url}/v1/chat/completions"
    wordy = chat(content="word " * 30)  # one request spends the window's tokens
    accepted, refused = until_refused(url, wordy, headers)
    assert len(accepted) == 1  # the first request of a window always passes
    assert_429(refused, "tokens_per_minute")
    quota_clock.advance(WINDOW)
    assert httpx.post(url, json=chat(), headers=headers).status_code == 200


def test_an_anthropic_path_over_quota_answers_in_anthropics_shape(
    quota_server: LiveServer,
) -> None:
    headers = {"x-api-key": keyed(quota_server, "thrifty")["authorization"][7:]}
    wordy = message("word " * 30)
    _, refused = until_refused(f"{quota_server.base_url}/v1/messages", wordy, headers)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "tokens_per_minute" in body["error"]["message"]


def test_streamed_requests_count_their_tokens_too(quota_server: LiveServer) -> None:
    headers = keyed(quota_server, "thrifty")
    url = f"{quota_server.base_url}/v1/chat/completions"
    body = {**chat(content="word " * 30), "stream": True}
    statuses = []
    for _ in range(50):  # refused once one window's streams have read and written 10 tokens
        with httpx.stream("POST", url, json=body, headers=headers) as response:
            response.read()
            statuses.append(response.status_code)
            if response.status_code != 200:
                assert_429(response, "tokens_per_minute")
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}


def upload(server: LiveServer, headers: dict[str, str], num_lines: int) -> httpx.Response:
    lines = [chat_line(f"r{i}", "hi", model="echo") for i in range(num_lines)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    files = {"file": ("in.jsonl", data, "application/jsonl")}
    return httpx.post(
        f"{server.base_url}/v1/files", files=files, data={"purpose": "batch"}, headers=headers
    )


def test_queued_requests_quota_counts_every_open_batch(idle_quota_server: LiveServer) -> None:
    quota_server = idle_quota_server
    headers = keyed(quota_server, "queue")
    url = f"{quota_server.base_url}/v1/batches"
    files = [upload(quota_server, headers, n).json()["id"] for n in (3, 3)]
    create = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert httpx.post(url, json={**create, "input_file_id": files[0]}, headers=headers).is_success
    over = httpx.post(url, json={**create, "input_file_id": files[1]}, headers=headers)
    assert_429(over, "max_queued_requests")
    sdk = anthropic.Anthropic(
        base_url=quota_server.base_url,
        default_headers={"x-api-key": headers["authorization"][7:]},
        max_retries=0,
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.batches.create(
            requests=[{"custom_id": f"m{i}", "params": message()} for i in range(3)]  # type: ignore[misc]
        )
    assert "max_queued_requests" in str(caught.value)
    # once the first batch has ended, its requests no longer count
    batch_id = httpx.get(url, headers=headers).json()["data"][0]["id"]
    with quota_server.svc.db.write() as conn:
        batches.transition(conn, batch_id, "failed")
    assert httpx.post(url, json={**create, "input_file_id": files[1]}, headers=headers).is_success
    sdk.close()


def test_stored_bytes_quota_then_deleting_frees_room(quota_server: LiveServer) -> None:
    headers = keyed(quota_server, "hoarder")
    first = upload(quota_server, headers, 20)  # ~2.6 KB
    assert first.status_code == 200
    assert_429(upload(quota_server, headers, 20), "max_stored_bytes")
    names = [
        f["id"]
        for f in httpx.get(f"{quota_server.base_url}/v1/files", headers=headers).json()["data"]
    ]
    assert names == [first.json()["id"]]  # the refused upload left nothing behind
    httpx.delete(f"{quota_server.base_url}/v1/files/{first.json()['id']}", headers=headers)
    assert upload(quota_server, headers, 20).status_code == 200


# --- keys never in logs -----------------------------------------------------------------------


def test_keys_never_appear_in_freights_logs(
    echo_server: LiveServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every log record of the server's own loggers, at DEBUG, while keys good and bad are
    used on the API and the dashboard (the served process's output: test_cli_keys.py)."""
    caplog.set_level(logging.DEBUG)
    # Libraries started earlier in the session (uvicorn, Ray, vLLM) may have configured
    # logging with disable_existing_loggers: switch every logger back on, at DEBUG.
    for name in ["", *logging.root.manager.loggerDict]:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "level", logging.DEBUG if name else logger.level)
    svc = echo_server.svc
    _, key = svc.keys.create("alpha")
    revoked, revoked_key = svc.keys.create("alpha")
    with svc.db.write() as conn:
        api_keys.revoke(conn, revoked.id, int(time.time()))
    wrong = "frk_" + "w" * 43
    base = echo_server.base_url
    for k in (key, revoked_key, wrong):
        for headers in ({"authorization": f"Bearer {k}"}, {"x-api-key": k}):
            assert httpx.get(f"{base}/v1/files", headers=headers).status_code in (200, 401)
            httpx.post(f"{base}/v1/chat/completions", json=chat(), headers=headers)
            httpx.post(f"{base}/v1/chat/completions", content=b"{", headers=headers)
            httpx.get(f"{base}/v1/batches/batch_nope", headers=headers)
        httpx.post(f"{base}/ui/login", data={"api_key": k})
    assert any(r.name.startswith("httpx") for r in caplog.records)  # capture is working
    for k in (key, revoked_key, wrong):
        assert k not in caplog.text
        assert k[12:] not in caplog.text  # not even the part after the shown prefix
