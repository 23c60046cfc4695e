"""Where webhooks may be sent: the destination address policy and the connection that enforces it.

Webhook URLs come from API callers, so without a policy the sender could be aimed at the
server's own network: services on loopback, the cloud metadata address, private ranges.
Only globally routable addresses are destinations, unless `[webhooks] allow_hosts` lists
the host name, the address or its network.

The policy is checked when an endpoint is created or changed, for a clear early error,
and again at every connection, which is the check that counts: `GuardedNetwork` resolves
the host once, checks every address it got, and connects to a checked address, never to
the name. A name that resolves to a public address at create and to 127.0.0.1 later (DNS
rebinding) is refused when it is used. TLS (SNI, the certificate check) and the Host
header still use the name, as httpcore passes it to `start_tls` and the request.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import anyio
import httpcore
import httpx

from freight.errors import InvalidRequest

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# (host, port) -> its addresses; raises OSError when it has none.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

ALLOW_HINT = (
    "webhooks are sent only to public addresses, unless [webhooks] allow_hosts in "
    "freight.toml lists the host name, the address or its network (CIDR)"
)
DEFAULT_PORTS = {"http": 80, "https": 443}
# Forms of IPv4 that resolvers accept besides a.b.c.d: 127.1, 2130706433, 0x7f.1, 0177.0.0.1.
_NUMERIC_IPV4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_NAT64 = IPv6Network("64:ff9b::/96")


class RefusedDestination(InvalidRequest):
    """The webhook URL's host is not a destination webhooks are sent to."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; {ALLOW_HINT}", param="url")


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address, in any form a resolver reads as one; None for a name."""
    bare = host.removeprefix("[").removesuffix("]")
    try:
        return ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_IPV4.fullmatch(bare):
        try:
            return IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def address_class(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", ...); None for a public one."""
    if isinstance(address, IPv6Address):
        # IPv6 forms that reach an IPv4 address are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_class(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private or special-purpose"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


def _name(host: str) -> str:
    return host.lower().removesuffix(".")


def parse_allow_entry(entry: str) -> IPNetwork | str:
    """An `allow_hosts` entry: a network (an address is a /32 or /128) or a host name.

    ValueError names the entry and what is accepted.
    """
    text = _name(entry.strip())
    literal = literal_address(text)
    if literal is not None:
        return ip_network(literal)
    try:
        return ip_network(text, strict=False)
    except ValueError:
        pass
    if _HOST_NAME.fullmatch(text):
        return text
    raise ValueError(
        f"{entry!r} is not an IP address (127.0.0.1, ::1), a network (10.0.0.0/8) "
        "or a host name (hooks.internal)"
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses, plus the networks and host names the operator allows."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()

    @classmethod
    def from_allow_hosts(cls, entries: Iterable[str]) -> AddressPolicy:
        parsed = [parse_allow_entry(e) for e in entries]
        return cls(
            networks=tuple(p for p in parsed if not isinstance(p, str)),
            names=frozenset(p for p in parsed if isinstance(p, str)),
        )

    def allows_name(self, host: str) -> bool:
        return _name(host) in self.names

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is not a destination ("loopback"), or None when it is one."""
        forms = [address]
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        if any(form in network for form in forms for network in self.networks):
            return None
        return address_class(address)


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for `host`, in its order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ip_address(info[4][0]) for info in infos))


async def checked_addresses(
    host: str, port: int, policy: AddressPolicy, resolver: Resolver | None = None
) -> list[IPAddress]:
    """The addresses `host` stands for, all of them allowed by `policy`.

    RefusedDestination if any is not: a name with one internal address among public
    ones is refused, as the connection could go to that one. Resolution errors
    (OSError) propagate. `resolver` defaults to the system's.
    """
    name = _name(host)
    literal = literal_address(name)
    if literal is not None:
        addresses = [literal]
    else:
        # RFC 6761: these names are loopback whatever a resolver says.
        if (name == "localhost" or name.endswith(".localhost")) and not policy.allows_name(name):
            raise RefusedDestination(f"{host} is a loopback name")
        addresses = await (resolver or system_resolve)(name, port)
        if not addresses:
            raise OSError(f"{host} has no address")
    if policy.allows_name(name):
        return addresses
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            subject = f"{host} is" if literal is not None else f"{host} resolves to"
            article = "an" if why[0] in "aeiou" else "a"
            raise RefusedDestination(f"{subject} {article} {why} address")
    return addresses


async def check_url_destination(
    url: str, policy: AddressPolicy, *, timeout: float, resolver: Resolver | None = None
) -> None:
    """RefusedDestination if the URL's host is, or now resolves to, a refused address.

    A name that does not resolve (yet, or within `timeout`) passes: this is the early
    check for a clear error at create; each connection is checked again.
    """
    parsed = httpx.URL(url)
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme, 443)
    try:
        with anyio.fail_after(timeout):
            await checked_addresses(parsed.raw_host.decode("ascii"), port, policy, resolver)
    except (OSError, TimeoutError):
        pass


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that opens TCP connections only to allowed addresses.

    `network` opens the connections (httpcore's anyio backend; tests pass a stub), always
    to a checked IP address, so nothing resolves the name again between check and connect.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.network = network or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await checked_addresses(host, port, self.policy, self.resolver)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}") from exc
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self.network.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        assert failure is not None  # addresses is never empty
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedDestination("a Unix socket is not a webhook destination")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through `GuardedNetwork`; proxies are never used,
    since a proxy would resolve and connect where the policy cannot see."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__()
        limits = httpx.Limits()
        # httpx takes no network backend, so the pool it built is replaced by the same
        # pool (httpx's defaults) with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetwork(policy, resolver=resolver, network=network),
        )
