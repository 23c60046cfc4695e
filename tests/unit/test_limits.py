"""Every limit on client input, below, at and above its boundary, with the message asserted.

The limits are configurable ([limits] in freight.toml); small values keep the inputs
small here. The same checks run behind the API (tests/e2e/test_limits_api.py).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from freight.api import uploads
from freight.config import LimitSettings
from freight.errors import InvalidRequest, PayloadTooLarge
from freight.protocol import message_batch_input
from freight.protocol.batch_input import FileValidator, iter_lines
from freight.service.intake import check_metadata
from freight.store.blob_store import BlobStore

URL = "/v1/chat/completions"


def line(custom_id: str = "a", content: str = "hi") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": URL,
        "body": {"model": "m", "messages": [{"role": "user", "content": content}]},
    }


def validate(raw: bytes, **limits: Any) -> FileValidator:
    settings = LimitSettings(**limits)
    validator = FileValidator(URL, settings, has_model=lambda m: m == "m")
    for number, chunk in iter_lines(io.BytesIO(raw), settings.max_line_bytes):
        validator.feed(number, chunk)
        if validator.is_truncated:
            break
    validator.finish()
    return validator


def jsonl(*objs: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def messages(validator: FileValidator) -> list[tuple[str | None, int | None, str | None]]:
    return [(p.code, p.line, p.message) for p in validator.problems]


# --- line size ------------------------------------------------------------------------


def line_of(num_bytes: int) -> bytes:
    """A valid line of exactly `num_bytes` bytes (padding inside the message)."""
    base = json.dumps(line("a", "")).encode()
    padded = json.dumps(line("a", "x" * (num_bytes - len(base)))).encode()
    assert len(padded) == num_bytes
    return padded


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
@pytest.mark.parametrize(("num_bytes", "is_accepted"), [(299, True), (300, True), (301, False)])
def test_line_size_limit(num_bytes: int, is_accepted: bool, ending: bytes) -> None:
    validator = validate(line_of(num_bytes) + ending, max_line_bytes=300)
    if is_accepted:
        assert not validator.is_failed, messages(validator)
    else:
        assert messages(validator) == [
            ("line_too_long", 1, "Line 1 is 301 bytes; the limit is 300 bytes per line.")
        ]


# --- requests per batch ---------------------------------------------------------------


@pytest.mark.parametrize(("num_lines", "is_accepted"), [(4, True), (5, True), (6, False)])
def test_requests_per_batch_limit(num_lines: int, is_accepted: bool) -> None:
    validator = validate(
        jsonl(*(line(f"r{i}") for i in range(num_lines))), max_requests_per_batch=5
    )
    if is_accepted:
        assert not validator.is_failed and validator.num_lines == num_lines
    else:
        assert messages(validator) == [
            (
                "too_many_tasks",
                6,
                "The file has more than 5 requests, the most one batch may hold. "
                "Split it into several batches.",
            )
        ]


def test_blank_lines_do_not_count_against_the_request_limit() -> None:
    raw = b"\n\r\n".join(json.dumps(line(f"r{i}")).encode() for i in range(5)) + b"\n\n\n"
    assert not validate(raw, max_requests_per_batch=5).is_failed


# --- custom_id length -----------------------------------------------------------------


@pytest.mark.parametrize(("length", "is_accepted"), [(7, True), (8, True), (9, False)])
def test_custom_id_length_limit(length: int, is_accepted: bool) -> None:
    validator = validate(jsonl(line("x" * length)), max_custom_id_chars=8)
    if is_accepted:
        assert not validator.is_failed
    else:
        assert messages(validator) == [
            ("invalid_custom_id", 1, "Line 1: custom_id is 9 characters; the limit is 8.")
        ]


# --- odd but valid input, and invalid UTF-8 -------------------------------------------


def test_crlf_bom_blank_lines_and_no_trailing_newline_are_accepted() -> None:
    raw = (
        b"\xef\xbb\xbf"
        + json.dumps(line("a")).encode()
        + b"\r\n\r\n\n"
        + json.dumps(line("b")).encode()
        + b"\r\n   \r\n"
        + json.dumps(line("c")).encode()  # no final newline
    )
    validator = validate(raw)
    assert not validator.is_failed, messages(validator)
    assert validator.num_lines == 3


def test_invalid_utf8_is_invalid_json_line_with_its_line_number() -> None:
    raw = jsonl(line("a")) + b"\n" + b'{"custom_id": "b\xff"}\n' + jsonl(line("c"))
    assert messages(validate(raw)) == [
        (
            "invalid_json_line",
            3,
            "Line 3 is not valid UTF-8 (byte 0xff at byte 17 of the line). "
            "Batch files must be UTF-8 encoded JSON Lines.",
        )
    ]


def test_a_bom_after_the_first_line_is_not_skipped() -> None:
    raw = jsonl(line("a")) + b"\xef\xbb\xbf" + jsonl(line("b"))
    assert [(code, number) for code, number, _ in messages(validate(raw))] == [
        ("invalid_json_line", 2)
    ]


def test_unpaired_surrogate_escape_is_invalid_json_line() -> None:
    raw = jsonl(line("a")) + json.dumps(line("b", "\ud800")).encode() + b"\n"
    ((code, number, message),) = messages(validate(raw))
    assert (code, number) == ("invalid_json_line", 2)
    assert "not valid Unicode" in (message or "")


def test_deeply_nested_line_is_invalid_json_line() -> None:
    raw = jsonl(line("a")) + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    assert [(code, number) for code, number, _ in messages(validate(raw))] == [
        ("invalid_json_line", 2)
    ]


# --- metadata -------------------------------------------------------------------------

LIMITS = LimitSettings()  # the defaults: 16 pairs, keys 64 and values 512 characters


@pytest.mark.parametrize(("num_pairs", "is_accepted"), [(15, True), (16, True), (17, False)])
def test_metadata_pairs_limit(num_pairs: int, is_accepted: bool) -> None:
    metadata = {f"k{i}": "v" for i in range(num_pairs)}
    if is_accepted:
        check_metadata(metadata, LIMITS)
    else:
        with pytest.raises(InvalidRequest) as raised:
            check_metadata(metadata, LIMITS)
        assert raised.value.message == "metadata has 17 pairs; at most 16 allowed."
        assert raised.value.param == "metadata"


@pytest.mark.parametrize(("length", "is_accepted"), [(63, True), (64, True), (65, False)])
def test_metadata_key_length_limit(length: int, is_accepted: bool) -> None:
    metadata = {"k" * length: "v"}
    if is_accepted:
        check_metadata(metadata, LIMITS)
    else:
        with pytest.raises(InvalidRequest) as raised:
            check_metadata(metadata, LIMITS)
        assert raised.value.message == (
            "metadata key 'kkkkkkkkkkkkkkkkkkkk'... is 65 characters; at most 64 allowed."
        )


@pytest.mark.parametrize(("length", "is_accepted"), [(511, True), (512, True), (513, False)])
def test_metadata_value_length_limit(length: int, is_accepted: bool) -> None:
    metadata = {"key": "v" * length}
    if is_accepted:
        check_metadata(metadata, LIMITS)
    else:
        with pytest.raises(InvalidRequest) as raised:
            check_metadata(metadata, LIMITS)
        assert raised.value.message == (
            "metadata value for 'key' is 513 characters; at most 512 allowed."
        )


# --- Anthropic Message Batches: requests per batch --------------------------------------


@pytest.mark.parametrize(("num", "is_accepted"), [(2, True), (3, True), (4, False)])
def test_message_batch_requests_limit(num: int, is_accepted: bool) -> None:
    params = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    body = {"requests": [{"custom_id": f"r{i}", "params": params} for i in range(num)]}
    fh = io.BytesIO(json.dumps(body).encode())
    limits = LimitSettings(max_message_batch_requests=3)
    if is_accepted:
        assert message_batch_input.check_envelope(fh, limits) == num
    else:
        with pytest.raises(InvalidRequest) as raised:
            message_batch_input.check_envelope(fh, limits)
        assert raised.value.message == (
            "requests: the batch has more than 3 requests, the most one batch may hold. "
            "Split it into several batches."
        )


# --- upload size, enforced while the bytes arrive ---------------------------------------


class StreamedRequest:
    """Just enough of a Starlette Request: headers and a body in chunks, counted as read."""

    def __init__(self, headers: dict[str, str], chunks: list[bytes]) -> None:
        self.headers = headers
        self.chunks = chunks
        self.num_read = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.num_read += 1
            yield chunk


def multipart(content: bytes, chunk_size: int = 100) -> StreamedRequest:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    return StreamedRequest({"content-type": f"multipart/form-data; boundary={boundary}"}, chunks)


@pytest.mark.parametrize(("num_bytes", "is_accepted"), [(999, True), (1000, True), (1001, False)])
def test_upload_size_limit(tmp_path: Path, num_bytes: int, is_accepted: bool) -> None:
    blobs = BlobStore(tmp_path)
    request = multipart(b"x" * num_bytes)
    receive = uploads.receive(request, blobs, "blob", max_bytes=1000)  # type: ignore[arg-type]
    if is_accepted:
        upload = asyncio.run(receive)
        assert upload.num_bytes == num_bytes and blobs.size("blob") == num_bytes
    else:
        with pytest.raises(PayloadTooLarge) as raised:
            asyncio.run(receive)
        assert raised.value.message == "The file is larger than the limit of 1000 bytes."
        assert not blobs.exists("blob")
        assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_oversized_upload_is_refused_before_the_rest_arrives(tmp_path: Path) -> None:
    request = multipart(b"x" * 100_000)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(uploads.receive(request, BlobStore(tmp_path), "blob", 1000))  # type: ignore[arg-type]
    assert request.num_read < len(request.chunks) // 10  # stopped near 1,000 bytes


@pytest.mark.parametrize(("num_bytes", "is_accepted"), [(99, True), (100, True), (101, False)])
def test_message_batch_body_size_limit(tmp_path: Path, num_bytes: int, is_accepted: bool) -> None:
    blobs = BlobStore(tmp_path)
    request = StreamedRequest({"content-type": "application/json"}, [b" " * num_bytes])
    receive = uploads.receive_json_body(request, blobs, "body", 100)  # type: ignore[arg-type]
    if is_accepted:
        assert asyncio.run(receive) == num_bytes
    else:
        with pytest.raises(PayloadTooLarge) as raised:
            asyncio.run(receive)
        assert raised.value.message == "The request body is larger than the limit of 100 bytes."
        assert list(tmp_path.iterdir()) == []


def test_message_batch_body_with_invalid_utf8_is_a_400() -> None:
    """Found by tests/fuzz: ijson raised UnicodeDecodeError, which became a 500."""
    raw = b'{"requests": [{"custom_id": "a", "params": {"model": "m", "x": "\xed\xa0\x80"}}]}'
    with pytest.raises(InvalidRequest) as raised:
        message_batch_input.check_envelope(io.BytesIO(raw), LimitSettings())
    assert raised.value.message.startswith("requests.0.params holds a lone UTF-16 surrogate")
