"""Connections of a capture, and which of them are FTP: control by content, data by linking.

A control connection is recognised by what it says, not by its port: the server speaks
first with a three-digit reply (a client that talks before the greeting is allowed; what
decides is that the other side's first bytes are a reply code). Implicit FTPS (TLS from the
first byte) cannot be told by content, so there the well-known port 990 decides.

A data connection is linked the way Zeek and Wireshark do it: the 227/229 reply or the
PORT/EPRT command registers an expected connection (host, port), and the first connection
made to it afterwards, in capture order, belongs to that set-up (ports get reused, so an
expectation is consumed once). Data connections are followed by sequence numbers only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections import deque
from typing import Any

from ftpdiag.capture.decode import ACK, FIN, RST, SYN, Segment
from ftpdiag.capture.ftp import CaptureSession, DataSetup
from ftpdiag.capture.tcp import Chunk, Direction
from ftpdiag.core.transfers import Mode

_REPLY_HEAD = re.compile(rb"\d{3}[ \-\r\n]")
_TLS_HEAD = b"\x16\x03"
IMPLICIT_FTPS_PORT = 990
MAX_UNDECIDED = 8192
"""Bytes a connection may carry before it is known whether it is an FTP control connection."""

CANDIDATE, CONTROL, DATA, OTHER = range(4)
SWEEP_EVERY = 1 << 16
"""Packets between two sweeps of finished connections."""
IDLE_FORGET_S = 600.0
"""A connection silent this long is forgotten (its FIN or RST may not be in the capture)."""


def _host(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


class Connection:
    """One TCP connection: ``dirs[0]`` from its originator, ``dirs[1]`` from the responder."""

    __slots__ = (
        "dirs",
        "first",
        "heads",
        "held",
        "held_bytes",
        "last",
        "opened",
        "orig",
        "reported",
        "resp",
        "role",
        "server",
        "session",
        "setup",
        "syn",
    )

    def __init__(self, ts: float, orig: tuple[str, int], resp: tuple[str, int], syn: int | None):
        self.orig, self.resp = orig, resp
        self.dirs = (Direction(), Direction())
        self.first = self.last = ts
        self.syn = syn  # the originator's SYN sequence number, when the capture has it
        self.opened = False
        self.role = CANDIDATE
        self.session: CaptureSession | None = None
        self.setup: DataSetup | None = None
        self.server = 1  # which direction the FTP server sends in
        self.heads: list[bytes] = [b"", b""]
        self.held: list[tuple[float, int, Chunk]] = []
        self.held_bytes = 0
        self.reported = False

    @property
    def done(self) -> bool:
        a, b = self.dirs
        return a.rst is not None or b.rst is not None or (a.fin is not None and b.fin is not None)

    @property
    def refused_or_timeout(self) -> str | None:
        """How an attempt that never opened ended: refused (RST) or unanswered."""
        if self.opened:
            return None
        return "refused" if self.dirs[1].rst is not None else "timeout"

    @property
    def duration(self) -> float:
        return self.last - self.first

    def ends(self, mode: Mode) -> dict[str, Any]:
        """Sizes and ends as the proxy reports them: the FTP server's end is the responder
        in passive mode and the originator in active mode."""
        s_idx = 1 if mode == "passive" else 0
        from_server, from_client = self.dirs[s_idx], self.dirs[1 - s_idx]

        def end(d: Direction) -> str:
            if not self.opened:
                return "never"
            return "reset" if d.rst is not None else "eof" if d.fin is not None else "open"

        def when(d: Direction) -> float | None:
            times = [t for t in (d.fin, d.rst) if t is not None]
            return min(times) if times else None

        cw, sw = when(from_client), when(from_server)
        first = None
        if cw is not None or sw is not None:
            first = "client" if sw is None or (cw is not None and cw < sw) else "server"
        return {
            "to_client": from_server.span,
            "to_server": from_client.span,
            "client_end": end(from_client),
            "server_end": end(from_server),
            "first_closed": first,
            "missed": (from_server.missed, from_client.missed),
        }


class Tracker:
    """Walks the segments of a capture in order and builds its FTP sessions."""

    def __init__(self, source: str) -> None:
        self.source = os.path.basename(source)
        self.table: dict[tuple[bytes, int, bytes, int], tuple[Connection, int]] = {}
        self.expected: dict[tuple[str, int], deque[tuple[CaptureSession, DataSetup]]] = {}
        self.sessions: list[CaptureSession] = []
        self.last = 0.0
        self._count = 0

    # ---- expectations --------------------------------------------------------------
    def _expect(self, session: CaptureSession, host: str, port: int, setup: DataSetup) -> None:
        self.expected.setdefault((host, port), deque()).append((session, setup))

    def _claim(self, conn: Connection) -> None:
        waiting = self.expected.get(conn.resp)
        while waiting:
            session, setup = waiting.popleft()
            if session.data_connected(setup, conn):
                conn.role, conn.session, conn.setup = DATA, session, setup
                break
        if waiting is not None and not waiting:
            del self.expected[conn.resp]

    # ---- packets -------------------------------------------------------------------
    def segment(self, ts: float, seg: Segment, buf: Any) -> None:
        """Account for one segment; ``buf`` holds its payload (read only for candidates and
        control connections, never for data)."""
        src, sport, dst, dport, seq, ack, flags, poff, captured, sent = seg
        self.last = ts
        self._count += 1
        if self._count % SWEEP_EVERY == 0:
            self._sweep(ts)
        key = (src, sport, dst, dport)
        hit = self.table.get(key)
        if flags & SYN and not flags & ACK and (hit is None or hit[0].syn != seq):
            if hit is not None:
                self._retire(hit[0], ts)
            hit = self._open(ts, key, seq)
        elif hit is None:
            hit = self._open(ts, key, None)
        conn, idx = hit
        conn.last = ts
        role = conn.role
        d = conn.dirs[idx]
        if role == OTHER:  # only its end matters: when it can be forgotten
            if flags & FIN:
                d.fin = ts
            if flags & RST:
                d.rst = ts
            return
        if role == DATA and not flags & 0x07 and conn.opened:  # the bulk: no SYN, FIN, RST
            if sent:
                d.data(d.offset(seq), captured, sent)
            elif flags & ACK:
                other = conn.dirs[1 - idx]
                other.acked_to(other.peek(ack))
            return
        rel = d.offset(seq, syn=bool(flags & SYN))
        if flags & SYN:
            rel += 1
        if idx == 1 and not flags & RST:
            conn.opened = True
        elif conn.syn is None and idx == 0:
            conn.opened = True  # joined mid-connection: it was open before the capture
        if conn.role == DATA:
            if sent:
                d.data(rel, captured, sent)
            if flags & ACK:
                conn.dirs[1 - idx].acked_to(conn.dirs[1 - idx].peek(ack))
        else:
            chunks: list[tuple[int, Chunk]] = []
            if sent:
                payload = bytes(buf[poff : poff + captured])
                chunks += [(idx, c) for c in d.stream(rel, payload, sent)]
            if flags & ACK:
                other = conn.dirs[1 - idx]
                chunks += [(1 - idx, c) for c in other.acknowledged(other.peek(ack))]
            if chunks:
                self._deliver(conn, ts, chunks)
        if flags & FIN and d.fin is None:
            d.fin, d.fin_at = ts, rel + sent
            self._ended(conn, ts, idx, clean=True)
        if flags & RST and d.rst is None:
            d.rst = ts
            if conn.role == DATA and idx == 1 and not conn.opened and conn.session and conn.setup:
                conn.session.data_refused(ts, conn.setup)
            self._ended(conn, ts, idx, clean=False)

    def _sweep(self, now: float) -> None:
        """Forget connections that are over and no longer needed, so that memory follows the
        connections open at a time, not all the capture ever had. Control connections stay:
        their sessions are the result."""
        for key, (conn, _) in list(self.table.items()):
            if conn.role == CONTROL or (conn.role == DATA and not conn.reported):
                continue
            if conn.done or now - conn.last > IDLE_FORGET_S:
                del self.table[key]

    def _open(
        self, ts: float, key: tuple[bytes, int, bytes, int], syn: int | None
    ) -> tuple[Connection, int]:
        src, sport, dst, dport = key
        conn = Connection(ts, (_host(src), sport), (_host(dst), dport), syn)
        self.table[key] = (conn, 0)
        self.table[(dst, dport, src, sport)] = (conn, 1)
        self._claim(conn)
        return conn, 0

    def _deliver(self, conn: Connection, ts: float, chunks: list[tuple[int, Chunk]]) -> None:
        if conn.role == CANDIDATE:
            for idx, chunk in chunks:
                conn.held.append((ts, idx, chunk))
                if isinstance(chunk, bytes):
                    conn.held_bytes += len(chunk)
                    if len(conn.heads[idx]) < 4:
                        conn.heads[idx] += chunk[:4]
            self._classify(conn)
            return
        session = conn.session
        assert session is not None
        for idx, chunk in chunks:
            side = "server" if idx == conn.server else "client"
            if isinstance(chunk, int):
                session.gap(ts, side, chunk)
            elif side == "server":
                session.server_bytes(ts, chunk)
            else:
                session.client_bytes(ts, chunk)

    def _classify(self, conn: Connection) -> None:
        heads = conn.heads
        server: int | None = None
        implicit = False
        for idx in (1, 0):
            if len(heads[idx]) >= 4 and _REPLY_HEAD.match(heads[idx]):
                server = idx
                break
        if server is None and heads[0].startswith(_TLS_HEAD):
            implicit = conn.resp[1] == IMPLICIT_FTPS_PORT
            server = 1 if implicit else None
        if server is None:
            syn_and_server_spoke = conn.syn is not None and len(heads[1]) >= 4
            both_spoke = len(heads[0]) >= 4 and len(heads[1]) >= 4
            undecided = conn.held_bytes > MAX_UNDECIDED or len(conn.held) > MAX_UNDECIDED // 32
            if syn_and_server_spoke or both_spoke or undecided:
                conn.role, conn.held = OTHER, []
            return
        conn.role, conn.server = CONTROL, server
        client, srv = (conn.orig, conn.resp) if server == 1 else (conn.resp, conn.orig)
        session = CaptureSession(
            f"{len(self.sessions) + 1:04x}",
            client,
            srv,
            conn.first,
            self.source,
            self._expect,
            from_start=conn.syn is not None,
            implicit_tls=implicit,
        )
        conn.session = session
        self.sessions.append(session)
        held, conn.held = conn.held, []
        for ts, idx, chunk in held:
            self._deliver(conn, ts, [(idx, chunk)])

    def _ended(self, conn: Connection, ts: float, idx: int, clean: bool) -> None:
        session = conn.session
        if conn.role == CONTROL and session is not None:
            side = "server" if idx == conn.server else "client"
            for c_idx, direction in enumerate(conn.dirs):
                if not clean or c_idx == idx:
                    self._deliver(conn, ts, [(c_idx, c) for c in direction.flush()])
            session.control_closed(ts, side, clean)
            if conn.done:
                session.close(ts)
        elif conn.role == DATA and session and conn.setup and conn.done and not conn.reported:
            conn.reported = True
            session.data_closed(ts, conn.setup)

    def _retire(self, conn: Connection, ts: float) -> None:
        """A new connection reuses this one's ports: whatever it left open is over."""
        if conn.role == DATA and conn.session is not None and conn.setup and not conn.reported:
            conn.reported = True
            conn.session.data_closed(ts, conn.setup)

    def finish(self) -> list[CaptureSession]:
        """The capture ended: deliver what is held, close what is still open."""
        for conn, idx in list(self.table.values()):
            if idx == 0 and conn.role == CONTROL:
                for c_idx, direction in enumerate(conn.dirs):
                    self._deliver(conn, self.last, [(c_idx, c) for c in direction.flush()])
        for session in self.sessions:
            session.close(self.last, capture_ended=True)
        return [session for session in self.sessions if not session.not_ftp]
