"""The JSON budget through the real server (echo engine): every JSON route, batch files
and Message Batches refuse deep, non-Unicode and unreadable JSON with a clear 400 in their
API's shape, quickly and in bounded memory, and ordinary requests still work."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import LiveServer, chat_line, wait_for_batch, write_jsonl

MiB = 1 << 20
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
DEEP = b'{"a":' * 200_000 + b"1" + b"}" * 200_000  # 1.2 MB, 200,000 levels
JSON_ROUTES = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/batches",
    "/v1/webhook_endpoints",
]


@pytest.fixture
def echo_server(module_echo_server: LiveServer) -> LiveServer:
    """The module's one server: each test here reads only the answers to what it sent."""
    return module_echo_server


def post(server: LiveServer, path: str, content: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": "application/json", **headers}
    return httpx.post(f"{server.base_url}{path}", content=content, headers=headers, timeout=60)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object, checked to be in the path's API shape."""
    body = response.json()
    if response.url.path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_a_deep_body_is_a_quick_400_in_bounded_memory(echo_server: LiveServer, path: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        response = post(echo_server, path, DEEP)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "The request body nests JSON 200000 levels deep; the limit is 64 ([limits] "
        "max_json_depth). Flatten the arrays and objects."
    )
    assert time.monotonic() - started < 10  # on a loaded 2-core machine; ~0.1 s idle
    assert peak < 12 * len(DEEP)  # client and server together, the body included


def test_ordinary_requests_still_work_through_the_sdks(echo_server: LiveServer) -> None:
    text = "caf\u00e9 \U0001f600 [{]}"  # the SDKs send the emoji as a surrogate pair
    chat = echo_server.openai().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=64, stop=["x"] * 4
    )
    assert chat.choices[0].message.content == text
    message = echo_server.anthropic().messages.create(
        model="echo", max_tokens=64, messages=[{"role": "user", "content": text}]
    )
    assert message.content[0].text == text  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_lone_surrogate_is_refused_on_real_time_routes(
    echo_server: LiveServer, path: str
) -> None:
    """It was a 500 (/v1/messages) or a dropped connection (/v1/chat/completions)."""
    body = {**(MESSAGE if path == "/v1/messages" else CHAT)}
    body["messages"] = [{"role": "user", "content": "a\ud800b"}]
    response = post(echo_server, path, json.dumps(body).encode())
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(
        "The request body holds a lone UTF-16 surrogate escape (\\ud800), which is not "
        "valid Unicode."
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_nan_and_infinity_are_refused_on_real_time_routes(
    echo_server: LiveServer, path: str
) -> None:
    """Python's json reads them; they are not JSON, and they used to reach the engine."""
    body = json.dumps({**(MESSAGE if path == "/v1/messages" else CHAT), "temperature": 0.5})
    response = post(echo_server, path, body.replace("0.5", "NaN").encode())
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "The request body holds the number NaN, which is not JSON: numbers must be finite. "
        "Send a finite number, or null where a value may be absent."
    )


def test_a_batch_line_with_infinity_is_refused_by_line(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("ok", "hi", model="echo")])
    bad = json.dumps(chat_line("inf", "hi", model="echo")).replace('"hi"', '"hi", "x": -Infinity')
    path.write_text(path.read_text() + bad + "\n")
    client = echo_server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, created.id, timeout=60)
    assert batch.status == "failed"
    assert [(e.code, e.line, e.message) for e in batch.errors.data] == [
        (
            "invalid_json_line",
            2,
            "Line 2 holds the number -Infinity, which is not JSON: numbers must be finite. "
            "Send a finite number, or null where a value may be absent.",
        )
    ]


def test_batch_files_name_the_line_too_deep_or_not_unicode(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    deep = chat_line("deep", "x", model="echo")
    deep["body"]["metadata"] = "PLACEHOLDER"
    deep_line = json.dumps(deep).replace('"PLACEHOLDER"', "[" * 5000 + "]" * 5000)
    lone = chat_line("lone", "a\ud800b", model="echo")
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("ok", "hi", model="echo"), lone])
    path.write_text(path.read_text() + deep_line + "\n")
    client = echo_server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, created.id, timeout=60)
    assert batch.status == "failed"
    problems = [(e.code, e.line, e.message) for e in batch.errors.data]
    assert problems == [
        (
            "invalid_json_line",
            2,
            "Line 2 holds a lone UTF-16 surrogate escape (\\ud800), which is not valid "
            "Unicode. A character beyond U+FFFF is written as a surrogate pair "
            "(\\ud83d\\ude00) or as UTF-8.",
        ),
        (
            "invalid_json_line",
            3,
            "Line 3 nests JSON 5002 levels deep; the limit is 64 ([limits] max_json_depth). "
            "Flatten the arrays and objects.",
        ),
    ]


def message_batch(server: LiveServer, raw: bytes) -> httpx.Response:
    return post(server, "/v1/messages/batches", raw, **{"anthropic-version": "2023-06-01"})


def test_message_batches_name_the_request_too_deep_or_not_unicode(
    echo_server: LiveServer,
) -> None:
    fine = json.dumps({"custom_id": "ok", "params": MESSAGE}).encode()
    claude = echo_server.anthropic()
    before = [b.id for b in claude.messages.batches.list()]
    for params, start in [
        # 10,000 levels: enough to have taken the reader before the fix to 100 MB.
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "requests.1.params nests JSON 10000 levels"),
        (b'{"model": "echo", "x": "a\\ud800b"}', "requests.1.params holds a lone UTF-16"),
        (b'{"model": "echo", "x": "a\xffb"}', "requests.1.params is not valid UTF-8"),
        (
            b'{"model": "echo", "max_tokens": 1' + b"0" * 100_000 + b"}",
            "requests.1.params holds a number out of range",
        ),
    ]:
        raw = b'{"requests": [%s, {"custom_id": "b", "params": %s}]}' % (fine, params)
        started = time.monotonic()
        response = message_batch(echo_server, raw)
        assert time.monotonic() - started < 10
        assert response.status_code == 400
        assert error_of(response)["message"].startswith(start)
    assert [b.id for b in claude.messages.batches.list()] == before  # none was created


def test_a_message_batch_custom_id_must_match_all_of_the_pattern(
    echo_server: LiveServer,
) -> None:
    """Bug 4: `re.match` with `$` accepted "a\\n"."""
    with pytest.raises(anthropic.BadRequestError) as raised:
        echo_server.anthropic().messages.batches.create(
            requests=[{"custom_id": "a\n", "params": MESSAGE}]  # type: ignore[list-item]
        )
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["error"]["message"].startswith('requests.0.custom_id: "a\\n" is invalid')


@pytest.mark.parametrize(
    ("path", "content", "message"),
    [
        (
            "/v1/messages",
            b"",
            "The request body is missing (empty or null); send a JSON object of the "
            "endpoint's parameters.",
        ),
        (
            "/v1/messages",
            b"[]",
            "The request body must be a JSON object of the endpoint's parameters, not an array.",
        ),
        (
            "/v1/chat/completions",
            b'"text"',
            "The request body must be a JSON object of the endpoint's parameters, not a string.",
        ),
        (
            "/v1/batches",
            b"null",
            "The request body is missing (empty or null); send a JSON object of the "
            "endpoint's parameters.",
        ),
        (
            "/v1/messages",
            b'{"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": '
            b'"\xff"}]}',
            "The request body is not valid UTF-8 (byte 0xff at byte 77). Send JSON encoded as "
            "UTF-8.",
        ),
        (
            "/v1/chat/completions",
            json.dumps(CHAT).encode("utf-16"),
            "The request body is not UTF-8. Send JSON encoded as UTF-8.",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "echo", "seed": 1' + b"0" * 100_000 + b"}",
            "The request body holds an integer of more than 4300 digits, larger than any "
            "parameter accepts.",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "echo", "messages": [}',
            "The request body is not valid JSON: Expecting value at character 31.",
        ),
    ],
)
def test_unreadable_bodies_get_a_message_that_says_what_is_wrong(
    echo_server: LiveServer, path: str, content: bytes, message: str
) -> None:
    response = post(echo_server, path, content)
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == message
    assert "None" not in error["message"]


@pytest.mark.parametrize(
    ("changes", "param", "fragment"),
    [
        ({"max_tokens": "5"}, "max_tokens", "Invalid type for 'max_tokens'"),
        ({"n": "1"}, "n", "not a string"),
        ({"seed": True}, "seed", "not a boolean"),
        ({"stop": ["x"] * 100}, "stop", "at most 4 stop sequences are allowed, not 100"),
        ({"messages": [{"role": "user", "content": None}]}, "messages.0.content", "not null"),
        ({"seed": 10**30}, "seed", "less than or equal to 9223372036854775807"),
        ({f"k{i}": 0 for i in range(100_000)}, "k0", "Unrecognized request argument"),
    ],
)
def test_openai_sdk_gets_a_400_naming_the_param(
    echo_server: LiveServer, changes: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.openai(max_retries=0).chat.completions.create(
            model="echo", messages=CHAT["messages"], extra_body=changes
        )
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == param
    assert fragment in error["message"] and "''" not in error["message"]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"max_tokens": "5"}, "Invalid type for 'max_tokens'"),
        ({"messages": [{"role": "user", "content": None}]}, "'messages.0.content'"),
    ],
)
def test_anthropic_sdk_gets_a_400_naming_the_param(
    echo_server: LiveServer, changes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        echo_server.anthropic(max_retries=0).messages.create(
            model="echo",
            max_tokens=8,
            messages=MESSAGE["messages"],  # type: ignore[arg-type]
            extra_body=changes,
        )
    body = raised.value.body
    assert isinstance(body, dict) and fragment in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("/v1/chat/completions", b"1e999", "Invalid value for 'temperature'"),
        ("/v1/messages", b"1e999", "Invalid value for 'temperature'"),
        ("/v1/messages", b"-1e999", "Invalid value for 'temperature'"),
        ("/v1/messages", b"1" + b"0" * 4000, "Invalid type for 'temperature'"),  # no float
    ],
)
def test_huge_numbers_are_a_400(
    echo_server: LiveServer, path: str, value: bytes, fragment: str
) -> None:
    body = json.dumps({**(MESSAGE if path == "/v1/messages" else CHAT), "temperature": 0})
    response = post(
        echo_server, path, body.replace('"temperature": 0', '"temperature": %s').encode() % value
    )
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(fragment)


def test_long_strings_are_harmless(echo_server: LiveServer) -> None:
    text = "x" * (5 * MiB)
    chat = echo_server.openai().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=4
    )
    assert chat.choices[0].finish_reason in ("stop", "length")
