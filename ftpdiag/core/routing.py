"""Choosing the server at login (``USER user@host[:port]``) and which servers may be chosen.

Every FTP gateway people use reads the destination from the login name: SuSE ftp-proxy's
``AllowMagicUser``, frox, jftpgw's ``loginstyle``, ProFTPD mod_proxy's ``user@host``, and the
"FTP proxy" setting of mainstream clients (FileZilla's ``USER %u@%h``). The user part may hold
an ``@`` itself (an e-mail address as login name), so the host follows the *last* ``@``.

A gateway that dials whatever a client names is an open relay into the networks behind it, so
the destinations are held to a policy: by default loopback and the private ranges only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ftpdiag.core.events import Address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Where a gateway may connect when nothing else is allowed: this machine and private networks.
DEFAULT_UPSTREAM_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    )
)


@dataclass(frozen=True, slots=True)
class Route:
    """The login split into the user for the server and the server to dial."""

    user: str
    host: str
    port: int

    @property
    def target(self) -> Address:
        return self.host, self.port


class RouteSyntaxError(ValueError):
    """A login that names no usable destination; the message is the reason, for a 530."""


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise RouteSyntaxError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def parse_route(login: str, default_port: int = 21) -> Route:
    """``user@host``, ``user@host:port``, ``user@host port``, ``user@[v6]`` and
    ``user@[v6]:port`` (a bare IPv6 address without a port is accepted too)."""
    user, at, dest = login.strip().rpartition("@")
    if not at or not user:
        raise RouteSyntaxError("log in as user@host[:port] to choose the server")
    dest = dest.strip()
    host, port = dest, default_port
    if " " in dest:
        host, _, rest = dest.partition(" ")
        port = _port(rest.strip())
    elif dest.startswith("["):
        inside, close, rest = dest[1:].partition("]")
        if not close:
            raise RouteSyntaxError(f"unclosed bracket in {dest!r}")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise RouteSyntaxError(f"unexpected {rest!r} after [{inside}]")
            port = _port(rest[1:])
    elif dest.count(":") == 1:
        host, _, text = dest.partition(":")
        port = _port(text)
    host = host.strip()
    if not host:
        raise RouteSyntaxError("no host after @")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise RouteSyntaxError(f"{host!r} is not an IPv6 address") from None
    return Route(user, host, port)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """Destinations a routing gateway may dial: networks, and host names allowed by name.

    Empty means the defaults (loopback and private ranges). A name is compared before it is
    resolved; an address (given, or resolved from a name not allowed by name) must lie in an
    allowed network, so a name cannot smuggle in an address the policy refuses.
    """

    networks: tuple[Network, ...] = field(default_factory=tuple)
    names: frozenset[str] = frozenset()

    @classmethod
    def from_args(cls, values: list[str] | tuple[str, ...]) -> UpstreamPolicy:
        """``--allow-upstream`` values: each a CIDR, an address, or a host name."""
        networks: list[Network] = []
        names: set[str] = set()
        for value in values:
            try:
                networks.append(ipaddress.ip_network(value.strip("[]"), strict=False))
            except ValueError:
                names.add(value.lower().rstrip("."))
        return cls(tuple(networks), frozenset(names))

    @property
    def allowed_networks(self) -> tuple[Network, ...]:
        return self.networks or (() if self.names else DEFAULT_UPSTREAM_NETWORKS)

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def refusal(self, host: str, address: str) -> str | None:
        """Why dialling ``address`` (resolved from ``host``) is refused, or None."""
        if self.allows_name(host):
            return None
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed_networks):
            return None
        shown = host if host == address else f"{host} ({address})"
        return f"destination {shown} is not allowed (add --allow-upstream {address} or a CIDR)"
