"""Where a URL a user gave may point. The daemon POSTs to a job's `webhookUrl`, so a user
could otherwise make it reach vq's own host, the private network or a cloud metadata
service (server-side request forgery).

Refused unless the operator allows them (`webhooks.allowHosts` by name,
`webhooks.allowNetworks` by CIDR): loopback, link-local, private, unique-local (fc00::/7),
multicast, unspecified, reserved and other non-public addresses, the IPv4-mapped and 6to4
IPv6 forms of those, and the metadata services' addresses and names.

Checked twice. At submit time, what the URL itself says: an address (in any form the
resolver reads, `127.1` too), `localhost` and `*.localhost`, a metadata name. At each
delivery, every address the name resolves to then; the connection is made to an address
that was checked (the name is not looked up again), with the name kept for the Host
header and TLS (SNI, certificate), so a name that resolves elsewhere the second time (DNS
rebinding) cannot slip through. Redirects are not followed and no proxy is used.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from vq.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class Refused(InvalidInput):
    """A URL that points where the daemon must not send (one line naming the address class)."""


def address_class(address: Address) -> str | None:
    """What kind of non-public address this is ("loopback", ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            kind = address_class(embedded)
            return f"{kind} (IPv4 inside IPv6)" if kind else None
    if address in METADATA_ADDRESSES:
        return "cloud metadata-service"
    for kind, test in (
        ("unspecified", "is_unspecified"),
        ("loopback", "is_loopback"),
        ("link-local", "is_link_local"),
        ("multicast", "is_multicast"),
    ):
        if getattr(address, test):
            return kind
    if address.version == 6 and address in UNIQUE_LOCAL:
        return "unique-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def numeric_host(host: str) -> Address | None:
    """The address a host written as one stands for (`127.0.0.1`, `127.1`, `::1`), read as
    the resolver reads it but without asking DNS; None for a name."""
    try:
        infos = socket.getaddrinfo(host.split("%")[0], None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%")[0])


def _name_class(host: str) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    if host in METADATA_NAMES:
        return "cloud metadata-service"
    return None


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".").lower()


@dataclass(frozen=True)
class Policy:
    """The operator's exceptions (config `webhooks.allowHosts`, `webhooks.allowNetworks`)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, settings) -> Policy:
        opts = settings.webhooks
        return cls(
            frozenset(h.rstrip(".").lower() for h in opts.allowHosts),
            tuple(ipaddress.ip_network(n) for n in opts.allowNetworks),
        )

    def _allowed(self, address: Address) -> bool:
        forms: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour
            if embedded is not None:
                forms.append(embedded)
        return any(form in network for form in forms for network in self.networks if form.version == network.version)

    def refused_kind(self, address: Address) -> str | None:
        """The class of a non-public address the operator has not allowed, or None."""
        kind = address_class(address)
        return None if kind is None or self._allowed(address) else kind

    def check_url(self, url: str, field: str) -> None:
        """Submit time: refuse what the URL itself says is internal (no DNS lookup)."""
        host = _host_of(url)
        if host in self.hosts:
            return
        address = numeric_host(host)
        if address is not None:
            kind = self.refused_kind(address)
            why = _is_a(address, kind) + "; allow it with webhooks.allowNetworks" if kind else None
        else:
            kind = _name_class(host)
            why = f"{host} is {_a(kind)} name; allow it with webhooks.allowHosts" if kind else None
        if why:
            raise Refused(f"{field}: {why}", field=field)

    def resolve(self, url: str, port: int) -> list[tuple[int, tuple]]:
        """Connect time: every address the URL's host resolves to now, each checked;
        (family, socket address) pairs to connect to."""
        host = _host_of(url)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[tuple[int, tuple]] = [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]
        if host in self.hosts:
            return found
        for _family, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            kind = self.refused_kind(address)
            if kind is None:
                continue
            if numeric_host(host) is not None:
                raise Refused(_is_a(address, kind) + "; allow it with webhooks.allowNetworks")
            raise Refused(
                f"{host} resolves to {address}, {_a(kind)} address; allow it with webhooks.allowHosts "
                "or webhooks.allowNetworks"
            )
        return found


def _a(kind: str) -> str:
    return ("an " if kind.startswith(("unspecified", "IPv")) else "a ") + kind


def _is_a(address: Address, kind: str) -> str:
    return f"{address} is {_a(kind)} address"


def connection(url: str, policy: Policy | None, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection for `url` that will connect only to addresses `policy` allows
    (resolved and checked here, once); `policy` None: no check (operator-given URLs)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if https:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    if policy is not None:
        addresses = policy.resolve(url, port)
        conn._create_connection = _to_one_of(addresses)  # type: ignore[attr-defined]  # http.client's socket hook, not in typeshed
    return conn


def _to_one_of(addresses: list[tuple[int, tuple]]):
    def create(_address, timeout=None, source_address=None):
        problem: OSError | None = None
        for _family, sockaddr in addresses:
            try:
                return socket.create_connection(sockaddr[:2], timeout, source_address)
            except OSError as exc:
                problem = exc
        raise problem or OSError("no address to connect to")

    return create
