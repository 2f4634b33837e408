"""Packet records from pcap and pcapng files, read in place over ``mmap``.

Only the record headers are parsed here; a packet is handed on as (timestamp, link type,
buffer, offset, captured length), so a 1 GiB capture is walked without copying its payloads
and memory does not grow with the file. The format is told by its magic bytes, never by the
file's name (tcpdump writes pcap, Wireshark and dumpcap pcapng, both under any name).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from typing import Any

Packet = tuple[float, int, Any, int, int]
"""(seconds since the epoch, link type, buffer, offset of the first byte, captured length)."""

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


class CaptureError(ValueError):
    """The file is not a capture this reader understands, or it is damaged."""


def looks_like_capture(head: bytes) -> bool:
    """True when ``head`` (the file's first bytes) starts a pcap or pcapng file."""
    return head[:4] in _PCAP_MAGICS or (head[:4] == _PCAPNG_SHB and head[8:12] in _BYTE_ORDER)


def packets(buf: Any) -> Iterator[Packet]:
    """Every packet of a capture held in ``buf`` (an ``mmap`` or bytes), in file order.

    A record cut short at the end of the file (a capture still being written, or killed)
    ends the walk quietly: everything before it is good data.
    """
    head = bytes(buf[:12])
    if head[:4] in _PCAP_MAGICS:
        return _pcap(buf, *_PCAP_MAGICS[head[:4]])
    if head[:4] == _PCAPNG_SHB and head[8:12] in _BYTE_ORDER:
        return _pcapng(buf)
    raise CaptureError("not a pcap or pcapng file (unknown magic bytes)")


class _Release:
    """Drops the mapped pages the walk has passed, so that resident memory stays flat
    however large the capture (the pages stay in the page cache; only the mapping lets
    go). A packet is used before the next one is read, and nothing keeps a view into
    the map (payloads that matter are copied), so the pages behind are never touched again."""

    WINDOW = 8 << 20

    def __init__(self, buf: Any) -> None:
        self.buf = buf if hasattr(buf, "madvise") else None
        self.done = 0

    def upto(self, off: int) -> None:
        if self.buf is not None and off - self.done >= self.WINDOW:
            end = off - off % mmap.PAGESIZE
            self.buf.madvise(mmap.MADV_DONTNEED, self.done, end - self.done)
            self.done = end


def _pcap(buf: Any, order: str, unit: float) -> Iterator[Packet]:
    if len(buf) < 24:
        raise CaptureError("pcap file shorter than its 24-byte header")
    linktype = struct.unpack_from(order + "I", buf, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    off, end = 24, len(buf)
    release = _Release(buf)
    next_release = release.WINDOW
    while off + 16 <= end:
        sec, frac, caplen, _orig = record.unpack_from(buf, off)
        off += 16
        if off + caplen > end:
            return
        yield sec + frac * unit, linktype, buf, off, caplen
        off += caplen
        if off > next_release:
            release.upto(off)
            next_release = off + release.WINDOW


def _resolution(options: bytes, order: str) -> float:
    """The ``if_tsresol`` option of an interface block (default microseconds)."""
    i = 0
    while i + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, i)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[i + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        i += 4 + (length + 3) // 4 * 4
    return 1e-6


def _pcapng(buf: Any) -> Iterator[Packet]:
    off, end = 0, len(buf)
    order = "<"
    interfaces: list[tuple[int, float]] = []
    release = _Release(buf)
    while off + 12 <= end:
        release.upto(off)
        if bytes(buf[off : off + 4]) == _PCAPNG_SHB:
            order = _BYTE_ORDER.get(bytes(buf[off + 8 : off + 12]), "")
            if not order:
                raise CaptureError(f"pcapng section at byte {off} has no byte-order magic")
            interfaces = []  # interface ids are per section
        kind, length = struct.unpack_from(order + "II", buf, off)
        if length < 12 or off + length > end:
            return
        body = off + 8
        if kind == 1:  # Interface Description Block
            linktype = struct.unpack_from(order + "H", buf, body)[0]
            options = bytes(buf[body + 8 : off + length - 4])
            interfaces.append((linktype, _resolution(options, order)))
        elif kind in (6, 2) and interfaces:  # Enhanced / obsolete Packet Block
            if kind == 6:
                iface, high, low, caplen, _orig = struct.unpack_from(order + "IIIII", buf, body)
            else:
                iface, _drops, high, low, caplen, _orig = struct.unpack_from(
                    order + "HHIIII", buf, body
                )
            if iface < len(interfaces):
                linktype, unit = interfaces[iface]
                caplen = min(caplen, length - 32)
                yield ((high << 32) | low) * unit, linktype, buf, body + 20, caplen
        elif kind == 3 and interfaces:  # Simple Packet Block: no timestamp
            orig = struct.unpack_from(order + "I", buf, body)[0]
            yield 0.0, interfaces[0][0], buf, body + 4, min(orig, length - 16)
        off += length


def open_capture(path: str) -> tuple[Any, Any]:
    """Map the file read-only; returns (file, mmap). An empty file maps to ``b""``."""
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller with the map
    try:
        mapped: Any = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file cannot be mapped
        mapped = b""
    return handle, mapped
