"""Where webhooks may go: the address policy, the guarded connection, and what a failed
attempt reports. No packet leaves the machine: names resolve through a stub, and
connections to "public" addresses are opened by a stub network that records them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

import httpcore
import pytest
from pydantic import ValidationError

from freight import netguard
from freight.config import WebhookSettings
from freight.errors import InvalidRequest
from freight.protocol import webhook_wire
from freight.service import webhook_sender
from tests.netstubs import RecordingNetwork, StubResolver

PUBLIC = "93.184.215.14"  # only ever handed to the recording network, never connected to
CLOSE = b"connection: close\r\n"


def check(
    url: str, allow_hosts: list[str] | None = None, resolver: StubResolver | None = None
) -> None:
    policy = netguard.AddressPolicy.from_allow_hosts(allow_hosts or [])
    asyncio.run(
        netguard.check_url_destination(url, policy, timeout=5, resolver=resolver or StubResolver())
    )


def post(
    url: str,
    *,
    resolver: StubResolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
    allow_hosts: list[str] | None = None,
) -> tuple[int | None, str | None]:
    settings = WebhookSettings(allow_hosts=allow_hosts or [])

    async def attempt() -> tuple[int | None, str | None]:
        resolve = resolver or StubResolver()  # never the system's: no DNS query leaves
        async with webhook_sender.http_client(
            settings, resolver=resolve, network=network
        ) as client:
            return await webhook_sender.post_event(
                client, url, webhook_wire.new_secret(), "evt_1", "{}", timeout_seconds=5
            )

    return asyncio.run(attempt())


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/hooks", "127.0.0.1 is a loopback address"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "2130706433 is a loopback address"),
        ("http://0x7f.1/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://localhost:9000/", "localhost is a loopback name"),
        ("http://LocalHost./", "loopback name"),
        ("http://api.localhost/", "loopback name"),
        ("http://0/", "0 is an unspecified address"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
        ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "private or special-purpose"),
        ("http://255.255.255.255/", "private or special-purpose"),
    ],
)
def test_non_public_addresses_are_refused_in_every_spelling(url: str, kind: str) -> None:
    with pytest.raises(netguard.RefusedDestination) as excinfo:
        check(url)
    assert kind in excinfo.value.message and excinfo.value.param == "url"
    assert "[webhooks] allow_hosts" in excinfo.value.message


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC}/hooks",
        "https://[2606:4700::1111]/hooks",
        f"https://[::ffff:{PUBLIC}]/hooks",
        "https://[64:ff9b::5db8:d70e]/hooks",  # NAT64 of a public address
    ],
)
def test_public_addresses_are_destinations(url: str) -> None:
    check(url)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolver = StubResolver(
        {"hooks.example.com": [PUBLIC], "mixed.example.com": [PUBLIC, "127.0.0.1"]}
    )
    check("https://hooks.example.com/h", resolver=resolver)
    with pytest.raises(netguard.RefusedDestination, match="resolves to a loopback address"):
        check("https://mixed.example.com/h", resolver=resolver)
    check("https://not-yet.example.com/h", resolver=resolver)  # unresolvable: checked at connect
    assert resolver.looked_up == ["hooks.example.com", "mixed.example.com", "not-yet.example.com"]


def test_allow_hosts_admits_the_listed_addresses_networks_and_names_only() -> None:
    allow = ["127.0.0.1", "10.0.0.0/8", "[::1]", "Hooks.Internal."]
    resolver = StubResolver({"hooks.internal": ["192.168.1.5"], "other.internal": ["192.168.1.5"]})
    for url in [
        "http://127.0.0.1:9000/",
        "http://10.200.0.1/",
        "http://[::ffff:10.1.2.3]/",
        "http://[::1]/",
        "http://hooks.internal/",
    ]:
        check(url, allow, resolver)
    for url, kind in [
        ("http://127.0.0.2/", "loopback"),
        ("http://other.internal/", "private"),
        ("http://localhost/", "loopback name"),
    ]:
        with pytest.raises(netguard.RefusedDestination, match=kind):
            check(url, allow, resolver)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host!", "", "http://x/"])
def test_allow_hosts_entries_that_are_no_address_network_or_name_are_config_errors(
    entry: str,
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        WebhookSettings(allow_hosts=["127.0.0.1", entry])
    assert f"{entry!r} is not an IP address" in str(excinfo.value)


def test_a_connection_goes_to_the_checked_address_with_the_name_in_host_and_sni() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC]})
    network = RecordingNetwork()
    assert post("https://hooks.example.com:8443/h", resolver=resolver, network=network) == (
        204,
        None,
    )
    assert network.connects == [(PUBLIC, 8443)]
    assert network.tls_server_names == ["hooks.example.com"]
    assert b"\r\nHost: hooks.example.com:8443\r\n" in network.sent


def test_a_name_rebound_to_loopback_after_a_good_connection_is_refused_at_the_next() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC]})
    network = RecordingNetwork(b"HTTP/1.1 204 No Content\r\n" + CLOSE + b"\r\n")
    assert post("http://hooks.example.com/h", resolver=resolver, network=network)[0] == 204
    resolver.names["hooks.example.com"] = ["127.0.0.1"]
    status, error = post("http://hooks.example.com/h", resolver=resolver, network=network)
    assert status is None
    assert error is not None and error.startswith(
        "refused: hooks.example.com resolves to a loopback address; webhooks are sent only"
    )
    assert network.connects == [(PUBLIC, 80)]  # nothing was opened the second time


def test_literal_loopback_is_refused_at_connect_unless_allow_listed() -> None:
    network = RecordingNetwork()
    status, error = post("http://127.0.0.1:9/h", network=network)
    assert status is None and error is not None
    assert error.startswith("refused: 127.0.0.1 is a loopback address") and not network.connects
    assert post("http://127.0.0.1:9/h", network=network, allow_hosts=["127.0.0.0/8"])[0] == 204
    assert network.connects == [("127.0.0.1", 9)]


def test_a_failed_attempt_reports_the_status_class_and_time_never_the_body() -> None:
    body = b"SECRET db password: hunter2"
    network = RecordingNetwork(
        b"HTTP/1.1 500 Internal Server Error\r\n"
        + f"content-length: {len(body)}\r\n".encode()
        + CLOSE
        + b"\r\n"
        + body
    )
    resolver = StubResolver({"hooks.example.com": [PUBLIC]})
    status, error = post("https://hooks.example.com/h", resolver=resolver, network=network)
    assert status == 500
    assert error is not None and re.fullmatch(r"receiver answered 5xx in \d+ ms", error)


class RefusingNetwork(RecordingNetwork):
    """Every connection is refused, as by a closed port."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("[Errno 111] Connection refused")


def test_connection_failures_are_one_class_whatever_the_socket_said() -> None:
    resolver = StubResolver({"hooks.example.com": [PUBLIC, "2606:4700::1111"]})
    network = RefusingNetwork()
    assert post("https://hooks.example.com/h", resolver=resolver, network=network) == (
        None,
        "could not connect",
    )
    assert network.connects == [(PUBLIC, 443), ("2606:4700::1111", 443)]  # each address tried
    assert post("https://nowhere.example.com/h", resolver=resolver, network=network) == (
        None,
        "could not connect",
    )


def test_a_url_with_credentials_is_refused_and_never_echoed() -> None:
    url = "https://bob:hunter2@hooks.example.com/h"
    with pytest.raises(InvalidRequest) as excinfo:
        webhook_wire.check_url(url)
    assert excinfo.value.param == "url" and "credentials (user:password@)" in excinfo.value.message
    assert "hunter2" not in excinfo.value.message
    assert webhook_wire.display_url(url) == "https://***@hooks.example.com/h"
    network = RecordingNetwork()  # an endpoint stored before they were refused
    status, error = post(
        url, resolver=StubResolver({"hooks.example.com": [PUBLIC]}), network=network
    )
    assert (
        status is None and error is not None and "credentials" in error and "hunter2" not in error
    )
    assert not network.connects
