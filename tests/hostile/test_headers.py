"""Hostile request heads, sent over a raw socket: huge and many headers, bad lengths.

No HTTP client sends these, so they go as bytes. The server must answer with a 4xx or
close the connection, never a 5xx, and stay alive within the memory cap; headers of
megabytes must be refused, not read whole; and a body that never comes (a declared length
longer than what is sent, a chunk that never ends) must not hold the connection open past
READ_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import socket

import pytest

from tests.hostile.capped_server import CappedServer, report

pytestmark = pytest.mark.slow

BODY = b'{"model":"echo","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
MIB = 1024 * 1024


def _request(extra_headers: bytes, *, body: bytes = BODY, length: bytes | None = None) -> bytes:
    declared = str(len(body)).encode() if length is None else length
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + declared + b"\r\n"
        + extra_headers + b"Connection: close\r\n\r\n" + body
    )  # fmt: skip


# (request, whether it must be refused: a 4xx or a closed connection, never served)
HEADS: dict[str, tuple[bytes, bool]] = {
    "one-64KiB-header": (_request(b"X-Pad: " + b"a" * 65536 + b"\r\n"), False),
    "one-8MiB-header": (_request(b"X-Pad: " + b"a" * (8 * MIB) + b"\r\n"), True),
    "100000-headers": (_request(b"".join(b"X-H%d: v\r\n" % i for i in range(100_000))), True),
    "1MiB-bearer-key": (_request(b"Authorization: Bearer " + b"k" * MIB + b"\r\n"), True),
    "huge-content-length": (_request(b"", length=b"9" * 30), True),
    "negative-content-length": (_request(b"", length=b"-1"), True),
    "two-content-lengths": (_request(b"Content-Length: 3\r\n"), True),
    "content-length-longer-than-body": (_request(b"", length=b"1000", body=BODY), True),
    "chunked-huge-chunk-size": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffff\r\n" + BODY,
        True,
    ),
    "header-without-colon": (_request(b"no colon here\r\n"), True),
    "invalid-header-bytes": (_request(b"X-Bad: \x00\x01\xff\r\n"), True),
}
READ_TIMEOUT_SECONDS = 20.0  # [server] timeouts in capped_server's config (2 s), with room


@pytest.mark.parametrize("name", list(HEADS))
def test_hostile_head_is_refused_or_answered(server: CappedServer, name: str) -> None:
    request, must_refuse = HEADS[name]
    problems = []
    try:
        status = _send(server, request)
    except TimeoutError:
        status = None
        problems.append(
            f"neither an answer nor a closed connection after {READ_TIMEOUT_SECONDS:.0f} s: "
            "the server still waits for the rest of the request"
        )
    if status is not None and status >= 500:
        problems.append(f"answered {status}")
    if must_refuse and status is not None and status < 400:
        problems.append(f"served it ({status}) instead of refusing it")
    problems += server.problems()
    assert not problems, report(server, f"a request with {name}", problems)


def _send(server: CappedServer, request: bytes) -> int | None:
    """The status the server answered, or None if it closed the connection first."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=READ_TIMEOUT_SECONDS) as sock:
        # Refused before it was all read is what a limit does: the answer may still come.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            head = sock.recv(64)
        except ConnectionResetError:
            return None
    if not head.startswith(b"HTTP/1.1 "):
        return None
    return int(head[9:12])
