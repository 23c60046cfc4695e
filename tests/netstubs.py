"""Stand-ins for the network under the webhook sender: a resolver whose names the test
sets, and a network backend that records where it was asked to connect and answers
with a canned HTTP response, so that "public" destinations are exercised without a
packet leaving the machine.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

import httpcore

from freight.netguard import IPAddress


class StubResolver:
    """Resolves only the names in `names` (to their addresses); asks no DNS server."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.looked_up: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.looked_up.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(a) for a in self.names[host]]


class CannedStream(httpcore.AsyncNetworkStream):
    """A connection that answers every request with `answer` and records what was sent."""

    def __init__(self, network: RecordingNetwork) -> None:
        self.network = network
        self.answered = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.answered:
            return b""
        self.answered = True
        return self.network.answer

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.network.sent += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.network.tls_server_names.append(server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        return None


class RecordingNetwork(httpcore.AsyncNetworkBackend):
    """Records each (host, port) it is asked to connect to; never opens a socket."""

    def __init__(self, answer: bytes = b"HTTP/1.1 204 No Content\r\n\r\n") -> None:
        self.answer = answer
        self.connects: list[tuple[str, int]] = []
        self.tls_server_names: list[str | None] = []
        self.sent = b""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return CannedStream(self)

    async def sleep(self, seconds: float) -> None:
        pass
