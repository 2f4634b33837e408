"""From a captured frame to a TCP segment: link layer, VLAN tags, IPv4/IPv6, TCP header.

The TCP length comes from the IP header, not from what was captured, so a capture with a
short snap length still tells how many bytes each segment carried (the sequence span is
the transfer's size; what is missing from the file is reported apart).
"""

from __future__ import annotations

import struct
from typing import Any

Segment = tuple[bytes, int, bytes, int, int, int, int, int, int, int]
"""(source address, source port, destination address, destination port, seq, ack, flags,
offset of the payload in the buffer, payload bytes captured, payload bytes sent)."""

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

ETHERNET, NULL, RAW, SLL, LOOP, SLL2, IPV4, IPV6 = 1, 0, 101, 113, 108, 276, 228, 229
_RAW_ALIASES = (12, 14)  # DLT_RAW as some systems number it
_VLAN = (0x8100, 0x88A8, 0x9100)
_IPV6_AF = (10, 24, 28, 30)  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
_EXTENSIONS = (0, 43, 60, 51, 135)  # hop-by-hop, routing, destination options, AH, mobility
_U16 = struct.Struct("!H")
_TCP = struct.Struct("!HHIIBB")


def _network(linktype: int, buf: Any, off: int, end: int) -> tuple[int, int]:
    """(ethertype-like protocol, offset of the IP header); protocol 0 when unknown."""
    if linktype == ETHERNET:
        if off + 14 > end:
            return 0, 0
        proto, off = _U16.unpack_from(buf, off + 12)[0], off + 14
        while proto in _VLAN and off + 4 <= end:
            proto, off = _U16.unpack_from(buf, off + 2)[0], off + 4
        return proto, off
    if linktype == SLL:
        return (_U16.unpack_from(buf, off + 14)[0], off + 16) if off + 16 <= end else (0, 0)
    if linktype == SLL2:
        return (_U16.unpack_from(buf, off)[0], off + 20) if off + 20 <= end else (0, 0)
    if linktype in (NULL, LOOP):
        if off + 4 > end:
            return 0, 0
        raw = bytes(buf[off : off + 4])
        family = int.from_bytes(raw, "big" if linktype == LOOP else "little")
        if family > 0xFFFF:  # written in the other byte order than this reader assumed
            family = int.from_bytes(raw, "little" if linktype == LOOP else "big")
        if family == 2:
            return 0x0800, off + 4
        return (0x86DD, off + 4) if family in _IPV6_AF else (0, 0)
    if linktype in (RAW, IPV4, IPV6, *_RAW_ALIASES) and off < end:
        version = buf[off] >> 4
        return {4: 0x0800, 6: 0x86DD}.get(version, 0), off
    return 0, 0


# Ethernet, IPv4 without options, TCP: what nearly every packet of a capture is, read in one go.
_ETH_IP4_TCP = struct.Struct("!12xHBxHxxHxB2x4s4sHHIIBB")


def tcp_segment(linktype: int, buf: Any, off: int, caplen: int) -> Segment | None:
    """The TCP segment in one frame, or None (not TCP, a later IP fragment, cut too short)."""
    end = off + caplen
    if linktype == ETHERNET and caplen >= 54:
        ethertype, vihl, total, frag, proto, src, dst, sport, dport, seq, ack, data_off, flags = (
            _ETH_IP4_TCP.unpack_from(buf, off)
        )
        if ethertype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x1FFF:
            header = (data_off >> 4) * 4
            payload = off + 34 + header
            sent = max((total or caplen - 14) - 20 - header, 0)
            captured = max(min(sent, end - payload), 0)
            return src, sport, dst, dport, seq, ack, flags, payload, captured, sent
    proto, off = _network(linktype, buf, off, end)
    if proto == 0x0800:
        if off + 20 > end:
            return None
        ihl = (buf[off] & 0x0F) * 4
        total = _U16.unpack_from(buf, off + 2)[0]
        if buf[off + 9] != 6 or _U16.unpack_from(buf, off + 6)[0] & 0x1FFF:
            return None
        src, dst = bytes(buf[off + 12 : off + 16]), bytes(buf[off + 16 : off + 20])
        # TSO on the capturing host leaves total length 0: fall back to what was captured.
        length = (total or end - off) - ihl
        off += ihl
    elif proto == 0x86DD:
        if off + 40 > end:
            return None
        length = _U16.unpack_from(buf, off + 4)[0]
        nxt = buf[off + 6]
        src, dst = bytes(buf[off + 8 : off + 24]), bytes(buf[off + 24 : off + 40])
        off += 40
        while nxt in _EXTENSIONS and off + 8 <= end:
            size = (buf[off + 1] + 2) * 4 if nxt == 51 else (buf[off + 1] + 1) * 8
            nxt, off, length = buf[off], off + size, length - size
        if nxt == 44 and off + 8 <= end:  # fragment header: only a first fragment is usable
            if _U16.unpack_from(buf, off + 2)[0] & 0xFFF8:
                return None
            nxt, off, length = buf[off], off + 8, length - 8
        if nxt != 6:
            return None
    else:
        return None
    if off + 20 > end:
        return None
    sport, dport, seq, ack, data_off, flags = _TCP.unpack_from(buf, off)
    header = (data_off >> 4) * 4
    payload = off + header
    sent = max(length - header, 0)
    captured = max(min(sent, end - payload), 0)
    return src, sport, dst, dport, seq, ack, flags, payload, captured, sent
