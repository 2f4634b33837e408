"""Splitting control-channel bytes into lines and lines into replies.

RFC 959 lines end in CRLF, but real peers send bare LF, so a line ends at LF and a preceding
CR is optional. Lines are bounded: a peer that never sends a newline must not make the proxy
buffer without limit, so past ``max_line`` bytes the splitter reports an ``OverlongLine`` once
and discards up to the next LF.
"""

from __future__ import annotations

from dataclasses import dataclass

IAC = 0xFF
_NEGOTIATION = frozenset({0xFB, 0xFC, 0xFD, 0xFE})  # WILL WONT DO DONT take an option byte


@dataclass(frozen=True, slots=True)
class OverlongLine:
    """A line that exceeded the limit; ``head`` is its start, kept for the diagnosis."""

    head: bytes
    limit: int


class LineSplitter:
    """Turns a byte stream into raw lines (terminator included), whatever the chunking."""

    def __init__(self, max_line: int = 8192) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a line (bounded by ``max_line``)."""
        return len(self._buf)

    def head(self, size: int = 32) -> str:
        """The first bytes held that do not form a line yet, as Latin-1 text: what a peer
        that does not speak FTP sent (a TLS ClientHello has no line end)."""
        return bytes(self._buf[:size]).decode("latin-1")

    def feed(self, data: bytes) -> list[bytes | OverlongLine]:
        out: list[bytes | OverlongLine] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start : nl + 1]
            start = nl + 1
            if self._discarding:
                self._discarding = False
                continue
            if self._buf:
                self._buf += piece
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = piece
            if len(line) > self.max_line:
                out.append(OverlongLine(line[:80], self.max_line))
            else:
                out.append(line)
        rest = data[start:]
        if rest and not self._discarding:
            self._buf += rest
            if len(self._buf) > self.max_line:
                out.append(OverlongLine(bytes(self._buf[:80]), self.max_line))
                self._buf.clear()
                self._discarding = True
        return out


def strip_telnet(raw: bytes) -> bytes:
    """Remove Telnet IAC sequences (RFC 854), keeping IAC IAC as a literal 0xFF.

    Clients prefix ABOR with IAC IP and IAC DM (RFC 959 §4.1.3); the parser must see ``ABOR``
    while the relay still forwards the original bytes untouched.
    """
    if IAC not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b != IAC:
            out.append(b)
            i += 1
        elif i + 1 < n and raw[i + 1] == IAC:
            out.append(IAC)
            i += 2
        elif i + 1 < n and raw[i + 1] in _NEGOTIATION:
            i += 3
        else:
            i += 2
    return bytes(out)


def line_text(raw: bytes) -> str:
    """The printable text of a raw line: Telnet stripped, terminator removed, never raising.

    FTP text is UTF-8 (RFC 2640) in practice but not always; undecodable bytes become U+FFFD
    in logs while the relayed bytes stay untouched.
    """
    body = strip_telnet(raw).rstrip(b"\r\n")
    # A stray DM (0xF2) or urgent byte can survive when the IAC went out-of-band.
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
