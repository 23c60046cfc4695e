"""The uvicorn Config `freight serve` and the tests' servers share, and `--host` forms."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from fastapi import FastAPI

from freight import config
from freight.api import server, slow_clients
from freight.config import ServerSettings
from tests.conftest import make_settings


def test_the_config_carries_the_server_limits(tmp_path: Path) -> None:
    limits = ServerSettings(
        max_header_bytes=4096,
        header_timeout_seconds=3,
        body_timeout_seconds=4,
        max_connections=7,
    )
    settings = make_settings(tmp_path, server=limits, host="[::1]")
    built = server.uvicorn_config(FastAPI(), settings, port=9999)
    assert isinstance(built.http, type)
    assert issubclass(built.http, slow_clients.LimitedHttpToolsProtocol)
    assert built.http.limits == limits
    assert isinstance(built.app, slow_clients.BodyTimeout)
    assert built.app.seconds == 4
    assert (built.host, built.port) == ("::1", 9999)


def test_server_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREIGHT_CONFIG", "/nonexistent/freight.toml")
    monkeypatch.setenv("FREIGHT_SERVER__MAX_CONNECTIONS", "50")
    assert config.load().server.max_connections == 50
    assert config.load().server.max_header_bytes == 64 * 1024


@pytest.mark.parametrize(
    ("host", "bind", "url"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost", "localhost"),
        ("::1", "::1", "[::1]"),
        ("[::1]", "::1", "[::1]"),
        ("::", "::", "[::]"),
    ],
)
def test_ipv6_hosts_bind_without_brackets_and_print_with_them(
    host: str, bind: str, url: str
) -> None:
    assert server.bind_address(host) == bind
    assert server.url_host(host) == url


def test_the_open_file_limit_is_raised_to_fit_the_connections(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"soft": 1024, "hard": 1500}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(
        resource, "setrlimit", lambda _, value: limits.update(soft=value[0], hard=value[1])
    )
    server.raise_open_file_limit(100)  # 100 sockets + 1024 other files: over the soft limit
    assert limits["soft"] == 1124
    server.raise_open_file_limit(1000)  # more than the hard limit allows: as far as it goes
    assert limits == {"soft": 1500, "hard": 1500}
    assert "open file limit 1500 is low for [server] max_connections = 1000" in caplog.text
