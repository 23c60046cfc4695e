"""What a create may ask for, over HTTP: one value per form field, a bounded window.

A multipart upload with two `file` parts was stored as both parts concatenated under
the last part's name; a field sent twice silently kept its last value. Both are 400s
now. A `completion_window` of "9999999d" (27,000 years) was accepted; it is refused
past `[limits] max_completion_window` (30 days unless configured).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from freight.config import LimitSettings
from freight.service.runtime import Service
from freight.store.schema import files as files_table
from tests.conftest import LiveServer, make_settings

BOUNDARY = "dup1icate"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\ncontent-disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def post_form(server: LiveServer, *parts: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/files",
        content=b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def assert_nothing_stored(server: LiveServer) -> None:
    with server.svc.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(files_table)).scalar() == 0
    assert list(server.svc.settings.files_dir.iterdir()) == []


@pytest.mark.parametrize("second_filename", ["b.jsonl", None], ids=["file", "plain-field"])
def test_a_second_file_part_is_a_400_naming_file(
    echo_server: LiveServer, second_filename: str | None
) -> None:
    response = post_form(
        echo_server,
        part("purpose", b"batch"),
        part("file", b"AAAA", "a.jsonl"),
        part("file", b"BBBB", second_filename),
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "file"
    assert "more than one 'file' part" in error["message"]
    assert_nothing_stored(echo_server)


def test_a_field_sent_twice_is_a_400_naming_it(echo_server: LiveServer) -> None:
    response = post_form(
        echo_server,
        part("purpose", b"batch"),
        part("purpose", b"assistants"),
        part("file", b"{}\n", "a.jsonl"),
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "purpose"
    assert_nothing_stored(echo_server)


def test_one_of_each_is_still_accepted(echo_server: LiveServer) -> None:
    response = post_form(echo_server, part("purpose", b"batch"), part("file", b"{}\n", "a.jsonl"))
    assert response.status_code == 200, response.text
    content = httpx.get(f"{echo_server.base_url}/v1/files/{response.json()['id']}/content")
    assert content.content == b"{}\n"


@pytest.fixture
def short_windows(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path / "home", limits=LimitSettings(max_completion_window="48h"))
    server = LiveServer(Service(settings, with_worker=False)).start()
    yield server
    server.stop()


def create(server: LiveServer, window: str) -> httpx.Response:
    client = server.openai()
    upload = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    client.close()
    body = {
        "input_file_id": upload.id,
        "endpoint": "/v1/chat/completions",
        "completion_window": window,
    }
    return httpx.post(f"{server.base_url}/v1/batches", json=body)


@pytest.mark.parametrize("window", ["9999999d", "31d", "745h"])
def test_a_completion_window_past_the_default_bound_is_a_400_naming_the_range(
    echo_server: LiveServer, window: str
) -> None:
    response = create(echo_server, window)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "completion_window"
    assert "'30d'" in error["message"] and "'1s'" in error["message"]
    assert "max_completion_window" in error["message"]


def test_windows_up_to_the_bound_are_accepted(echo_server: LiveServer) -> None:
    for window in ("24h", "30d", "720h"):
        assert create(echo_server, window).status_code == 200, window


def test_a_configured_bound_applies_to_the_sdk_too(short_windows: LiveServer) -> None:
    assert create(short_windows, "48h").status_code == 200
    client = short_windows.openai(max_retries=0)
    upload = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="3d",  # type: ignore[arg-type]
        )
    assert "'48h'" in str(caught.value) and caught.value.body["param"] == "completion_window"  # type: ignore[index]
    client.close()
