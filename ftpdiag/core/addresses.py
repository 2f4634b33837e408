"""Codecs for data-connection addresses: PASV 227, EPSV 229, PORT and EPRT.

Every parser raises ``AddressError`` with a message fit for a diagnosis; none of them
resolves or dials anything, so any address is safe as data here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_SIX = re.compile(
    r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})"
)
# RFC 2428 §3: "(<d><d><d><tcp-port><d>)" where <d> is any printable ASCII character.
_EPSV = re.compile(r"\(([\x21-\x7e])\1\1(\d{1,5})\1\)")


class AddressError(ValueError):
    """A data-connection address that cannot be parsed or is out of range."""


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise AddressError(f"port {value} is out of range 1..65535")
    return value


def _six_numbers(text: str) -> tuple[str, int]:
    match = _SIX.search(text)
    if match is None:
        raise AddressError("no h1,h2,h3,h4,p1,p2 address found")
    nums = [int(g) for g in match.groups()]
    if any(n > 255 for n in nums):
        raise AddressError(f"number out of range 0..255 in {match.group(0)!r}")
    return ".".join(map(str, nums[:4])), _port(nums[4] * 256 + nums[5])


def parse_pasv_reply(text: str) -> tuple[str, int]:
    """Host and port from a 227 reply's text (RFC 959 §4.1.2; the format is not fixed)."""
    return _six_numbers(text)


def parse_port_arg(arg: str) -> tuple[str, int]:
    """Host and port from a PORT argument (RFC 959 §4.1.2)."""
    return _six_numbers(arg)


def format_host_port(host: str, port: int) -> str:
    """``h1,h2,h3,h4,p1,p2`` for PORT and 227; IPv4 only by definition."""
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is None:
            raise AddressError(f"{host} is IPv6: PORT/PASV cannot carry it, use EPRT/EPSV")
        addr = mapped
    return ",".join([*str(addr).split("."), str(port // 256), str(port % 256)])


def parse_epsv_reply(text: str) -> int:
    """The port from a 229 reply's text (RFC 2428 §3)."""
    match = _EPSV.search(text)
    if match is None:
        raise AddressError("no (|||port|) found")
    return _port(int(match.group(2)))


def format_epsv(port: int) -> str:
    return f"(|||{port}|)"


def parse_eprt_arg(arg: str) -> tuple[str, int]:
    """Host and port from an EPRT argument such as ``|2|::1|6275|`` (RFC 2428 §2)."""
    arg = arg.strip()
    if len(arg) < 2:
        raise AddressError("empty EPRT argument")
    delim = arg[0]
    parts = arg.split(delim)
    if len(parts) != 5 or parts[4] != "":
        raise AddressError(f"EPRT argument {arg!r} is not <d>af<d>host<d>port<d>")
    af, host, port = parts[1:4]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise AddressError(f"EPRT host {host!r} is not a numeric address") from None
    if (af, addr.version) not in {("1", 4), ("2", 6)}:
        raise AddressError(f"EPRT family {af!r} does not match host {host}")
    if not port.isdigit():
        raise AddressError(f"EPRT port {port!r} is not a number")
    return str(addr), _port(int(port))


def format_eprt(host: str, port: int) -> str:
    addr = ipaddress.ip_address(host)
    return f"|{1 if addr.version == 4 else 2}|{addr}|{port}|"


def rewrite_pasv_text(text: str, host: str, port: int) -> str:
    """The 227 text with its address replaced, everything else kept as the server wrote it."""
    return _SIX.sub(format_host_port(host, port), text, count=1)


def rewrite_epsv_text(text: str, port: int) -> str:
    return _EPSV.sub(format_epsv(port), text, count=1)


def is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return ":" in host


def same_host(a: str, b: str) -> bool:
    """Address equality that treats ``::ffff:1.2.3.4`` as ``1.2.3.4``."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


def is_unroutable(host: str) -> bool:
    """True for addresses a remote client cannot dial: private, unspecified, link-local."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return True
    return addr.is_private or addr.is_unspecified or addr.is_link_local or addr.is_reserved


def show(address: tuple[str, int]) -> str:
    """``host:port`` for a log or a message; an IPv6 host in brackets (``[::1]:21``)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class Endpoints:
    """The addresses of one session: the client, the proxy's two ends, the server.

    ``upstream_local`` and ``upstream_peer`` are known once the control connection to the
    server is up; data listeners bind next to the control connection of their side."""

    client: tuple[str, int]
    client_local: tuple[str, int]
    upstream_target: tuple[str, int]
    upstream_local: tuple[str, int] | None = None
    upstream_peer: tuple[str, int] | None = None
