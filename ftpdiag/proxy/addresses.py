"""Twisted address objects as the plain ``(host, port)`` tuples the core speaks."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress

from ftpdiag.core.events import Address


def host_port(address: IAddress) -> Address:
    """The host and port of a TCP address (the proxy only ever has TCP sockets)."""
    assert isinstance(address, IPv4Address | IPv6Address), address
    return address.host, address.port
