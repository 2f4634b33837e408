"""TCP streams rebuilt from segments: sequence spans for data, ordered bytes for control.

Sequence numbers are unwrapped to 64-bit offsets (a 5 GB transfer wraps the 32-bit space),
so a data connection's size is its sequence span whatever the capture kept of it: a short
snap length or dropped packets lower only ``missed``, the bytes absent from the file. A
control connection's bytes are delivered in order, with retransmissions and overlaps cut
away, out-of-order segments held until the hole before them fills, and holes that never
fill (the peer acknowledged them, or the capture ended) reported as gaps.
"""

from __future__ import annotations

from bisect import bisect_left

_MASK = 0xFFFFFFFF
_HALF = 1 << 31
MAX_PENDING = 1 << 18
"""Out-of-order control bytes held before the hole before them is declared a gap."""
MAX_PENDING_SEGMENTS = 512
"""Out-of-order control segments held (however small): each later step looks at them all."""
MAX_INTERVALS = 256
"""Separate captured ranges a data direction tracks before it forgets the oldest."""

Chunk = bytes | int
"""What a control stream delivers: bytes in order, or the size of a gap (an int)."""


class Direction:
    """One direction of a TCP connection (segments from one endpoint to the other)."""

    __slots__ = (
        "_last_raw",
        "_last_rel",
        "_pending",
        "_pending_bytes",
        "_spans",
        "covered",
        "fin",
        "fin_at",
        "high",
        "low",
        "next",
        "rst",
    )

    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._last_rel = 0
        self.low: int | None = None  # offset of the first payload byte seen (SYN + 1 when seen)
        self.high = 0  # one past the last payload byte seen
        self.covered = 0  # payload bytes present in the capture, each counted once
        self._spans: list[list[int]] = []
        self.next = 0  # control streams: offset of the next byte to deliver
        self._pending: dict[int, tuple[bytes, int]] = {}
        self._pending_bytes = 0
        self.fin: float | None = None
        self.fin_at: int | None = None  # the FIN's offset: an ACK of it acknowledges no byte
        self.rst: float | None = None

    def offset(self, seq: int, syn: bool = False) -> int:
        """The unwrapped offset of ``seq`` from this direction's first data byte."""
        if self._last_raw is None:
            self._last_raw, self._last_rel = seq, -1 if syn else 0
            if syn:
                self.low = 0
            return self._last_rel
        delta = (seq - self._last_raw) & _MASK
        if delta >= _HALF:
            delta -= 1 << 32
        self._last_raw, self._last_rel = seq, self._last_rel + delta
        return self._last_rel

    def peek(self, seq: int) -> int | None:
        """The offset of ``seq`` (an acknowledgement number) without moving the reference."""
        if self._last_raw is None:
            return None
        delta = (seq - self._last_raw) & _MASK
        return self._last_rel + (delta - (1 << 32) if delta >= _HALF else delta)

    @property
    def span(self) -> int:
        """Bytes sent in this direction, from the sequence numbers."""
        return self.high - self.low if self.low is not None else 0

    @property
    def missed(self) -> int:
        """Bytes sent but absent from the capture (dropped, or cut by the snap length)."""
        return max(self.span - self.covered, 0)

    def data(self, rel: int, captured: int, sent: int) -> None:
        """Account for a data segment without keeping its payload."""
        if sent <= 0:
            return
        low = self.low
        if low is None or rel < low:
            self.low = rel
        end = rel + sent
        if end > self.high:
            self.high = end
        if captured > 0:
            spans = self._spans
            if spans:  # the usual case, inline: in order after the last captured range
                last = spans[-1]
                if last[1] == rel:
                    last[1] = rel + captured
                    self.covered += captured
                    return
            self._cover(rel, rel + captured)

    def acked_to(self, rel: int | None) -> None:
        """The peer acknowledged bytes up to ``rel``: they were sent, captured or not (the
        last segments of a transfer may be missing while the receiver's ACKs are there)."""
        if rel is None or self.low is None:
            return
        if self.fin_at is not None:
            rel = min(rel, self.fin_at)
        if rel > self.high:
            self.high = rel

    def _cover(self, start: int, end: int) -> None:
        spans = self._spans
        if spans:
            last = spans[-1]
            if last[0] <= start <= last[1]:  # the usual case: in order, or a retransmission
                if end > last[1]:
                    self.covered += end - last[1]
                    last[1] = end
                return
        i = bisect_left(spans, [start, start])
        if i > 0 and spans[i - 1][1] >= start:
            i -= 1
        j, new_start, new_end = i, start, end
        while j < len(spans) and spans[j][0] <= new_end:
            new_start, new_end = min(new_start, spans[j][0]), max(new_end, spans[j][1])
            self.covered -= spans[j][1] - spans[j][0]
            j += 1
        spans[i:j] = [[new_start, new_end]]
        self.covered += new_end - new_start
        if len(spans) > MAX_INTERVALS:
            del spans[0]  # its bytes stay counted; only a late retransmission into it is lost

    # ---- control streams: ordered bytes -----------------------------------------------
    def stream(self, rel: int, payload: bytes, sent: int) -> list[Chunk]:
        """Bytes now deliverable in order after this segment, and the gaps among them."""
        self.data(rel, len(payload), sent)
        if rel + sent <= self.next:
            return []
        if rel > self.next:
            held = self._pending.get(rel)
            if held is None or held[1] < sent:
                self._pending[rel] = (payload, sent)
                self._pending_bytes += len(payload)
            if self._pending_bytes > MAX_PENDING or len(self._pending) > MAX_PENDING_SEGMENTS:
                return self.skip_to(min(self._pending))
            return []
        out = self._take(rel, payload, sent)
        out += self._drain()
        return out

    def _take(self, rel: int, payload: bytes, sent: int) -> list[Chunk]:
        out: list[Chunk] = []
        skip = self.next - rel
        if skip < len(payload):
            out.append(payload[skip:])
        if sent > len(payload):  # cut by the snap length: the rest is a gap
            out.append(rel + sent - max(self.next, rel + len(payload)))
        self.next = rel + sent
        return out

    def _drain(self) -> list[Chunk]:
        out: list[Chunk] = []
        while self._pending:
            start = min(self._pending)
            if start > self.next:
                break
            payload, sent = self._pending.pop(start)
            self._pending_bytes -= len(payload)
            if start + sent > self.next:
                out += self._take(start, payload, sent)
        return out

    def skip_to(self, target: int) -> list[Chunk]:
        """Give up on the bytes before ``target``: report them as a gap, deliver what follows."""
        out: list[Chunk] = []
        if target > self.next:
            out.append(target - self.next)
            self.next = target
        return out + self._drain()

    def acknowledged(self, rel: int | None) -> list[Chunk]:
        """The peer acknowledged bytes up to ``rel``: the sender will not send them again, so
        a hole below it is a gap in the capture, not a segment still to come."""
        if rel is not None and self.fin_at is not None:
            rel = min(rel, self.fin_at)
        if rel is None or rel <= self.next:
            return []
        target = min([rel, *self._pending])
        return self.skip_to(target) if target > self.next else []

    def flush(self) -> list[Chunk]:
        """At the end: deliver everything held, the holes between as gaps."""
        out: list[Chunk] = []
        while self._pending:
            out += self.skip_to(min(self._pending))
        return out
