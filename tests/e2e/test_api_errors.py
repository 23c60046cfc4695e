"""Every error path of the OpenAI API in OpenAI's error shape, with the right status.

Validation codes are checked through the real server and SDK with the echo engine:
what is tested is Freight's validation, which does not depend on the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer, chat_line, wait_for_batch, write_jsonl
from tests.sdk import output_lines


def submit(
    server: LiveServer, tmp_path: Path, lines: list[Any], endpoint: str = "/v1/chat/completions"
) -> Any:
    client = server.openai()
    uploaded = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"
    )
    return wait_for_batch(client, batch.id, timeout=60)


def echo(custom_id: str, **body: Any) -> dict[str, Any]:
    return chat_line(custom_id, "hello there", model="echo", **body)


@pytest.mark.parametrize(
    ("lines", "code", "line"),
    [
        ([echo("a"), "{oops", echo("c")], "invalid_json_line", 2),
        ([echo("a"), echo("b"), echo("a")], "duplicate_custom_id", 3),
        ([echo("a"), {**echo("b"), "url": "/v1/completions"}], "url_mismatch", 2),
        ([echo("a"), chat_line("b", "x")], "model_mismatch", 2),
        ([chat_line("a", "x", model="no-such-model")], "model_not_found", 1),
        (
            [echo("a"), {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions"}],
            "missing_required_field",
            2,
        ),
        ([{**echo("a"), "priority": 1}], "unexpected_field", 1),
        ([{**echo("a"), "method": "GET"}], "invalid_method", 1),
    ],
)
def test_file_problems_fail_the_batch_with_code_and_line(
    echo_server: LiveServer, tmp_path: Path, lines: list[Any], code: str, line: int
) -> None:
    batch = submit(echo_server, tmp_path, lines)
    assert batch.status == "failed" and batch.failed_at
    assert batch.output_file_id is None and batch.error_file_id is None
    (error,) = batch.errors.data
    assert (error.code, error.line) == (code, line)
    assert error.message


def test_empty_file_fails_the_batch(echo_server: LiveServer, tmp_path: Path) -> None:
    batch = submit(echo_server, tmp_path, ["", "  "])
    assert batch.status == "failed"
    assert [e.code for e in batch.errors.data] == ["empty_file"]


def test_too_many_tasks(tmp_path: Path) -> None:
    from freight.service.runtime import Service
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "home")
    settings.limits.max_requests_per_batch = 3
    server = LiveServer(Service(settings)).start()
    try:
        batch = submit(server, tmp_path, [echo(str(i)) for i in range(4)])
    finally:
        server.stop()
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("too_many_tasks", 4)]


def test_bad_bodies_become_400_lines_and_the_rest_succeed(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    lines = [
        echo("ok"),
        echo("zero", max_tokens=0),
        echo("unknown", top_k=3),
        echo("streamed", stream=True),
    ]
    batch = submit(echo_server, tmp_path, lines)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    client = echo_server.openai()
    errors = output_lines(client, batch.error_file_id)
    by_id = {e["custom_id"]: e for e in errors}
    assert {k: v["response"]["body"]["error"]["param"] for k, v in by_id.items()} == {
        "zero": "max_tokens",
        "unknown": "top_k",
        "streamed": "stream",
    }
    assert all(e["response"]["status_code"] == 400 and e["error"] is None for e in errors)


def test_unknown_ids_are_404_in_openai_shape(echo_server: LiveServer) -> None:
    client = echo_server.openai()
    for call in (
        lambda: client.batches.retrieve("batch_missing"),
        lambda: client.batches.cancel("batch_missing"),
        lambda: client.files.retrieve("file-missing"),
        lambda: client.files.content("file-missing"),
        lambda: client.files.delete("file-missing"),
    ):
        with pytest.raises(openai.NotFoundError) as excinfo:
            call()
        body = excinfo.value.body
        assert isinstance(body, dict) and body["type"] == "invalid_request_error"
        assert "missing" in body["message"]


def test_bad_arguments_are_400(echo_server: LiveServer, tmp_path: Path) -> None:
    client = echo_server.openai()
    uploaded = client.files.create(
        file=write_jsonl(tmp_path / "in.jsonl", [echo("a")]), purpose="batch"
    )
    cases = [
        ({"endpoint": "/v1/moderations"}, "endpoint", "/v1/chat/completions"),
        ({"completion_window": "soon"}, "completion_window", "24h"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "16"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "64"),
        ({"metadata": {"k": "v" * 513}}, "metadata", "512"),
    ]
    for override, param, fragment in cases:
        args = {
            "input_file_id": uploaded.id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **override,
        }
        with pytest.raises(openai.BadRequestError) as excinfo:
            client.batches.create(**args)
        assert excinfo.value.body["param"] == param
        assert fragment in excinfo.value.body["message"]
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            extra_body={"surprise": 1},
        )
    assert excinfo.value.body["param"] == "surprise"


def test_batch_from_a_non_batch_file_is_400(echo_server: LiveServer, tmp_path: Path) -> None:
    client = echo_server.openai()
    uploaded = client.files.create(
        file=write_jsonl(tmp_path / "in.jsonl", [echo("a")]), purpose="user_data"
    )
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "purpose 'batch'" in excinfo.value.body["message"]


def test_upload_with_a_bad_purpose_is_400(echo_server: LiveServer, tmp_path: Path) -> None:
    client = echo_server.openai()
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.files.create(
            file=write_jsonl(tmp_path / "in.jsonl", [echo("a")]), purpose="nonsense"
        )  # type: ignore[arg-type]
    assert excinfo.value.body["param"] == "purpose"


def test_cancel_of_an_ended_batch_is_409(echo_server: LiveServer, tmp_path: Path) -> None:
    batch = submit(echo_server, tmp_path, [echo("a")])
    with pytest.raises(openai.ConflictError) as excinfo:
        echo_server.openai().batches.cancel(batch.id)
    assert "completed" in excinfo.value.body["message"]


def test_raw_http_errors_never_use_fastapi_shapes(echo_server: LiveServer) -> None:
    base = f"{echo_server.base_url}/v1"
    responses = [
        httpx.get(f"{base}/nothing-here"),
        httpx.post(
            f"{base}/batches", content=b"{not json", headers={"content-type": "application/json"}
        ),
        httpx.post(f"{base}/batches", json={"endpoint": "/v1/chat/completions"}),
        httpx.get(f"{base}/batches", params={"limit": 0}),
        httpx.post(f"{base}/files", content=b"plain", headers={"content-type": "text/plain"}),
    ]
    assert [r.status_code for r in responses] == [404, 400, 400, 400, 400]
    for response in responses:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_file_list_retrieve_delete(echo_server: LiveServer, tmp_path: Path) -> None:
    client = echo_server.openai()
    ids = [
        client.files.create(
            file=write_jsonl(tmp_path / f"f{i}.jsonl", [echo("a")]), purpose="batch"
        ).id
        for i in range(3)
    ]
    listed = [f.id for f in client.files.list(purpose="batch")]
    assert set(ids) <= set(listed)
    page = client.files.list(limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    deleted = client.files.delete(ids[0])
    assert deleted.deleted and deleted.id == ids[0]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(ids[0])


def test_batch_list_is_newest_first_and_pages_with_after(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    uploaded = client.files.create(
        file=write_jsonl(tmp_path / "in.jsonl", [echo("a")]), purpose="batch"
    )
    created = [
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == created[::-1][:2] and first.has_more
    every = [b.id for b in client.batches.list(limit=2)]  # the SDK pages with `after`
    assert every == created[::-1]
