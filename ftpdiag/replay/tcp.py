"""Two socket facts the replay needs, without pyftpdlib (the fake servers of the tests use the
first one too)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys


def unacked_bytes(sock: socket.socket) -> int:
    """Bytes sent but not yet acknowledged by the peer (Linux SIOCOUTQ; 0 elsewhere), so a
    reset comes after exactly the bytes meant to get through."""
    if not sys.platform.startswith("linux"):
        return 0
    import fcntl
    import termios

    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    value: int = struct.unpack("i", raw)[0]
    return value


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False
