"""Synthetic captures for the capture tests: TCP conversations written as pcap or pcapng.

Packets are built byte by byte here (IPv4/IPv6, TCP, and the link layers the reader
supports), so each test states exactly which segments a capture holds, in which order,
lost or repeated.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def ip_packet(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:  # fmt: skip
    """An IPv4 or IPv6 packet holding one TCP segment (checksums left zero)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0) + payload  # fmt: skip
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                           s.packed, d.packed) + tcp  # fmt: skip
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed) + tcp


def frame(packet: bytes, link: str = "ethernet", vlans: tuple[int, ...] = ()) -> bytes:
    """The IP packet in a frame of the given link type."""
    proto = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    if link == "ethernet":
        tags = b"".join(struct.pack("!HH", 0x8100, v) for v in vlans)
        return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", proto) + packet
    if link == "sll":
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, proto) + packet
    if link == "sll2":
        return struct.pack("!HHIHBB8s", proto, 0, 1, 1, 0, 6, b"\x02" * 8) + packet
    if link == "null":  # BSD loopback: the address family in the writer's byte order
        return struct.pack("<I", 2 if proto == 0x0800 else 30) + packet
    return packet  # raw


LINKTYPES = {"ethernet": 1, "sll": 113, "sll2": 276, "null": 0, "raw": 101}


def pcap(frames: list[tuple[float, bytes]], link: str = "ethernet", snaplen: int = 0,
         big_endian: bool = False, nanoseconds: bool = False) -> bytes:  # fmt: skip
    """A classic pcap file; ``snaplen`` cuts each frame as tcpdump -s would."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen or 262144, LINKTYPES[link])]
    for ts, data in frames:
        kept = data[:snaplen] if snaplen else data
        frac = round((ts % 1) * (1e9 if nanoseconds else 1e6))
        out.append(struct.pack(order + "IIII", int(ts), frac, len(kept), len(data)) + kept)
    return b"".join(out)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng(frames: list[tuple[float, bytes]], link: str = "ethernet") -> bytes:
    """A pcapng file: section header, one interface (nanosecond resolution), packet blocks."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", LINKTYPES[link], 0, 0) + tsresol)
    blocks = [shb, idb]
    for ts, data in frames:
        stamp = round(ts * 1e9)
        blocks.append(_block(6, struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF,
                                            len(data), len(data)) + data))  # fmt: skip
    return b"".join(blocks)


@dataclass
class Capture:
    """Frames in capture order, each 1 ms after the previous one."""

    link: str = "ethernet"
    vlans: tuple[int, ...] = ()
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    clock: float = 1_700_000_000.0
    connections: int = 0

    def add(self, packet: bytes) -> None:
        self.clock += 0.001
        self.frames.append((self.clock, frame(packet, self.link, self.vlans)))

    def conversation(self, client: tuple[str, int], server: tuple[str, int]) -> Conversation:
        """A new connection; each gets its own initial sequence numbers, as on a real host."""
        self.connections += 1
        return Conversation(self, client, server, cseq=1000 + 7919 * self.connections)

    def pcap(self, **options: object) -> bytes:
        return pcap(self.frames, self.link, **options)  # type: ignore[arg-type]


@dataclass
class Conversation:
    """One TCP connection; ``c``/``s`` send from the client/server with running sequence
    numbers (``send=False`` advances them without capturing the segment: a lost packet)."""

    cap: Capture
    client: tuple[str, int]
    server: tuple[str, int]
    cseq: int = 1000
    sseq: int = 0xFFFFF000  # wraps after 4 KiB: the reader must unwrap

    def _pkt(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        a, b = (self.client, self.server) if from_client else (self.server, self.client)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        return ip_packet(a[0], a[1], b[0], b[1], seq, ack, flags, payload)

    def open(self) -> Conversation:
        self.cap.add(self._pkt(True, SYN))
        self.cseq += 1
        self.cap.add(self._pkt(False, SYN | ACK))
        self.sseq += 1
        self.cap.add(self._pkt(True, ACK))
        return self

    def syn(self) -> None:
        """A SYN nobody answers (call again for its retransmissions)."""
        self.cap.add(self._pkt(True, SYN))

    def refused(self) -> None:
        """A SYN answered by RST: nothing listens at the server's port."""
        self.cap.add(self._pkt(True, SYN))
        self.cseq += 1
        self.cap.add(self._pkt(False, RST | ACK))

    def segment(self, from_client: bool, payload: bytes, send: bool = True) -> bytes:
        packet = self._pkt(from_client, PSH | ACK, payload)
        if send:
            self.cap.add(packet)
        if from_client:
            self.cseq += len(payload)
        else:
            self.sseq += len(payload)
        return packet

    def c(self, payload: bytes, send: bool = True) -> bytes:
        return self.segment(True, payload, send)

    def s(self, payload: bytes, send: bool = True) -> bytes:
        return self.segment(False, payload, send)

    def ack(self, from_client: bool) -> None:
        self.cap.add(self._pkt(from_client, ACK))

    def close(self, first_client: bool = False, reset: bool = False) -> None:
        flags = RST | ACK if reset else FIN | ACK
        self.cap.add(self._pkt(first_client, flags))
        if reset:
            return
        if first_client:
            self.cseq += 1
        else:
            self.sseq += 1
        self.cap.add(self._pkt(not first_client, FIN | ACK))
        if first_client:
            self.sseq += 1
        else:
            self.cseq += 1
