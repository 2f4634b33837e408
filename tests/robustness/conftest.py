"""Shared machinery of the robustness suite.

- ``ScriptedUpstream``: a raw-socket FTP-ish server (one thread per connection) that speaks
  just enough FTP for ftplib and the proxy, and can be told to reset, close or stall at a
  given phase, or to answer with hostile bytes. ``arm(script)`` applies a script to the next
  control connection only, so a healthy session on the same upstream stays healthy.
- ``RawClient``: a victim client on raw sockets (RST, silent close, stall on demand).
- ``HealthySession``: a thread that repeats checksum-verified transfers through the proxy.
- ``Rig``: an in-process proxy whose internals (``factory.sessions``) can be inspected.
- ``/proc`` probes: this process's own TCP sockets, descriptor count and RSS.

Everything listens and connects on 127.0.0.x only, and every socket has a timeout.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.core.session import SessionConfig
from ftpdiag.proxy.access import AccessPolicy
from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.testing import ProxyHandle, in_reactor

#: Bound on every blocking socket operation of the suite.
TIMEOUT = 5.0
#: The file every healthy session downloads (and uploads back).
HEALTHY_NAME = "healthy.bin"
HEALTHY_DATA = random.Random(8).randbytes(256 * 1024 + 17)
HEALTHY_SHA = hashlib.sha256(HEALTHY_DATA).hexdigest()
#: A download that never ends by itself (bounded by ``ENDLESS_SECONDS``), for mid-transfer faults.
ENDLESS_NAME = "endless.bin"
ENDLESS_SECONDS = 15.0
#: How many bytes move before a "mid-transfer" fault fires.
MID_TRANSFER = 64 * 1024

PHASES = ("greeting", "login", "pasv", "download", "upload", "abor", "quit")
FAULTS = ("rst", "close", "stall")


# ---- errors Twisted swallows ----------------------------------------------------------------
#: Failures logged by Twisted itself: exceptions in protocol callbacks outside
#: ``ClientControl.feed`` (data pipes, factories, connectionMade) never become
#: ``proxy.internal_error`` and, with no log observer started, would vanish.
TWISTED_ERRORS: list[str] = []


def _twisted_observer(event: dict[str, Any]) -> None:
    failure = event.get("log_failure")
    if failure is not None:
        TWISTED_ERRORS.append(f"{event.get('log_format')}: {failure.getTraceback()}")
    elif event.get("isError"):
        TWISTED_ERRORS.append(str(event.get("log_format") or event.get("message")))


def _install_twisted_observer() -> None:
    from twisted.logger import globalLogPublisher

    globalLogPublisher.addObserver(_twisted_observer)


_install_twisted_observer()


@pytest.fixture(autouse=True)
def no_swallowed_twisted_errors() -> Iterator[None]:
    """Fail a test during which Twisted logged an unhandled error (a glue bug)."""
    before = len(TWISTED_ERRORS)
    yield
    new = TWISTED_ERRORS[before:]
    assert not new, "Twisted logged unhandled errors:\n" + "\n".join(new[:3])


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``soak`` marker (deselect with ``-m 'not soak'``)."""
    config.addinivalue_line("markers", "soak: long-running robustness test (minutes)")


# ---- socket helpers -------------------------------------------------------------------------
def rst(sock: socket.socket | None) -> None:
    """Close with SO_LINGER {1, 0}: the kernel sends a TCP RST instead of a FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def silent_close(sock: socket.socket | None) -> None:
    """A plain close that the peer sees as a FIN: unread input (which would turn the close
    into a RST) is drained first, and the FIN is sent before the descriptor goes."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        for _ in range(1000):
            if not sock.recv(1 << 16):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- /proc probes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SockInfo:
    """One TCP socket held by this process."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # kernel state number in hex, "0A" = LISTEN

    @property
    def listening(self) -> bool:
        return self.state == "0A"


def _proc_addr(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
        if ip.startswith("::ffff:"):
            ip = ip[7:]
    return ip, int(port, 16)


def own_sockets(pid: int | str = "self") -> list[SockInfo]:
    """TCP sockets whose descriptor process ``pid`` holds (from /proc/PID/{fd,net/tcp*})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    found = []
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[9]) in inodes:
                    found.append(SockInfo(_proc_addr(parts[1]), _proc_addr(parts[2]), parts[3]))
    return found


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it is truthy (bounded); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


# ---- the scriptable upstream ----------------------------------------------------------------
Action = Callable[["UpstreamConn"], bool | None]


@dataclass
class Script:
    """What one upstream connection does.

    ``phase``/``fault``: where the upstream resets ("rst"), closes ("close") or stops reading
    and writing ("stall"). ``manual`` phases (pasv, download, upload) wait for ``go`` so the
    test decides the instant. ``replies`` maps a verb to raw bytes sent instead of the normal
    reply, or to an action ``f(conn)`` (return True to end the connection).
    """

    phase: str | None = None
    fault: str | None = None
    greeting: bytes = b"220 scripted upstream ready\r\n"
    greeting_delay: float = 0.0
    replies: dict[str, bytes | Action] = field(default_factory=dict)
    after_login: bytes = b""
    go: threading.Event = field(default_factory=threading.Event)
    fired: threading.Event = field(default_factory=threading.Event)
    fired_at: float = 0.0

    MANUAL = frozenset({"pasv", "download", "upload"})


class UpstreamConn:
    """One control connection of the scripted upstream (runs in its own thread)."""

    def __init__(self, upstream: ScriptedUpstream, sock: socket.socket, script: Script) -> None:
        self.upstream = upstream
        self.sock = sock
        self.script = script
        self.buf = b""
        self.pending: deque[bytes] = deque()
        self.listener: socket.socket | None = None
        self.data: socket.socket | None = None
        self.port_target: tuple[str, int] | None = None
        self.user = ""
        sock.settimeout(TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    # -- plumbing
    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def readline(self) -> bytes | None:
        if self.pending:
            return self.pending.popleft()
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def close_all(self) -> None:
        for sock in (self.data, self.listener, self.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self.data = self.listener = None

    def fault_here(self, phase: str) -> bool:
        """If the script faults at ``phase``, do it and return True (the connection ends)."""
        script = self.script
        if script.phase != phase or script.fault is None:
            return False
        if phase in Script.MANUAL:
            script.go.wait(TIMEOUT)
        script.fired_at = time.monotonic()
        script.fired.set()
        if script.fault == "rst":
            rst(self.data)
            if self.listener is not None:
                self.listener.close()
            rst(self.sock)
        elif script.fault == "close":
            silent_close(self.data)
            if self.listener is not None:
                self.listener.close()
            silent_close(self.sock)
        else:  # stall: hold every socket open, read nothing, write nothing
            self.upstream.released.wait(4 * ENDLESS_SECONDS)
        return True

    # -- data connections
    def open_data(self) -> socket.socket | None:
        try:
            if self.port_target is not None:
                target, self.port_target = self.port_target, None
                conn = socket.create_connection(target, timeout=TIMEOUT)
            elif self.listener is not None:
                self.listener.settimeout(TIMEOUT)
                conn, _ = self.listener.accept()
                self.listener.close()
                self.listener = None
            else:
                return None
        except OSError:
            return None
        conn.settimeout(TIMEOUT)
        self.data = conn
        return conn

    def end_data(self) -> None:
        if self.data is not None:
            with contextlib.suppress(OSError):
                self.data.close()
            self.data = None

    # -- the conversation
    def run(self) -> None:
        script = self.script
        if self.fault_here("greeting"):
            return
        if script.greeting_delay:
            time.sleep(script.greeting_delay)
        self.send(script.greeting)
        while True:
            line = self.readline()
            if line is None:
                return
            self.upstream.received.append(line)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "USER" and self.fault_here("login"):
                return
            if verb in ("QUIT", "ABOR") and self.fault_here(verb.lower()):
                return
            override = script.replies.get(verb)
            if isinstance(override, bytes):
                self.send(override)
                continue
            if override is not None:
                if override(self):
                    return
                continue
            handler = getattr(self, f"do_{verb}", None)
            if handler is None:
                self.send(b"502 Command not implemented.\r\n")
            elif handler(arg):
                return

    def do_USER(self, arg: str) -> None:
        self.user = arg
        self.send(b"331 Password required.\r\n")

    def do_PASS(self, arg: str) -> None:
        self.send(b"230 Logged in.\r\n" + self.script.after_login)

    def do_TYPE(self, arg: str) -> None:
        self.send(b"200 Type set.\r\n")

    def do_NOOP(self, arg: str) -> None:
        self.send(b"200 NOOP ok.\r\n")

    def do_SYST(self, arg: str) -> None:
        self.send(b"215 UNIX Type: L8\r\n")

    def do_PWD(self, arg: str) -> None:
        self.send(b'257 "/" is the current directory.\r\n')

    def do_HELP(self, arg: str) -> None:
        self.send(b"214 Help OK.\r\n")

    def do_SIZE(self, arg: str) -> None:
        data = self.upstream.files.get(arg)
        self.send(b"213 %d\r\n" % len(data) if data is not None else b"550 No such file.\r\n")

    def _listen(self) -> int:
        if self.listener is not None:
            self.listener.close()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4)
        return int(self.listener.getsockname()[1])

    def do_PASV(self, arg: str) -> bool:
        port = self._listen()
        self.send(b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n" % (port >> 8, port & 255))
        return self.fault_here("pasv")

    def do_EPSV(self, arg: str) -> bool:
        port = self._listen()
        self.send(b"229 Entering Extended Passive Mode (|||%d|).\r\n" % port)
        return self.fault_here("pasv")

    def do_PORT(self, arg: str) -> None:
        try:
            nums = [int(n) for n in arg.split(",")]
            self.port_target = (".".join(map(str, nums[:4])), nums[4] * 256 + nums[5])
        except (ValueError, IndexError):
            self.send(b"501 Bad PORT.\r\n")
            return
        self.send(b"200 PORT ok.\r\n")

    def do_EPRT(self, arg: str) -> None:
        try:
            _, _, host, port, _ = arg.split(arg[0])
            self.port_target = (host, int(port))
        except (ValueError, IndexError):
            self.send(b"501 Bad EPRT.\r\n")
            return
        self.send(b"200 EPRT ok.\r\n")

    def do_ABOR(self, arg: str) -> None:
        self.send(b"225 No transfer to abort.\r\n")

    def do_QUIT(self, arg: str) -> bool:
        self.send(b"221 Goodbye.\r\n")
        silent_close(self.sock)
        return True

    def do_RETR(self, arg: str) -> bool:
        if arg != ENDLESS_NAME and arg not in self.upstream.files:
            self.send(b"550 No such file.\r\n")
            return False
        data = self.open_data()
        if data is None:
            self.send(b"425 Cannot open data connection.\r\n")
            return False
        self.send(b"150 Opening BINARY mode data connection.\r\n")
        if arg != ENDLESS_NAME:
            try:
                data.sendall(self.upstream.files[arg])
            except OSError:
                self.end_data()
                self.send(b"426 Connection closed; transfer aborted.\r\n")
                return False
            self.end_data()
            self.send(b"226 Transfer complete.\r\n")
            return False
        return self._endless(data)

    def _endless(self, data: socket.socket) -> bool:
        """Stream until the peer goes, ABOR arrives or time runs out; watch the control."""
        chunk = bytes(range(256)) * 64
        sent = 0
        deadline = time.monotonic() + ENDLESS_SECONDS
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([self.sock], [data], [], 0.05)
            if readable:
                line = self.readline()
                if line is None:
                    self.end_data()
                    return True
                self.upstream.received.append(line)
                if line.strip().upper().endswith(b"ABOR"):
                    if self.fault_here("abor"):
                        return True
                    rst(self.data)
                    self.data = None
                    self.send(b"426 Transfer aborted.\r\n226 ABOR command successful.\r\n")
                    return False
                self.pending.append(line)
            if writable:
                try:
                    sent += data.send(chunk)
                except OSError:
                    self.end_data()
                    self.send(b"426 Connection closed; transfer aborted.\r\n")
                    return False
                if sent >= MID_TRANSFER and self.fault_here("download"):
                    return True
        self.end_data()
        self.send(b"226 Transfer complete.\r\n")
        return False

    def do_STOR(self, arg: str) -> bool:
        data = self.open_data()
        if data is None:
            self.send(b"425 Cannot open data connection.\r\n")
            return False
        self.send(b"150 Ok to send data.\r\n")
        received = bytearray()
        try:
            while chunk := data.recv(65536):
                received += chunk
                if len(received) >= MID_TRANSFER // 2 and self.fault_here("upload"):
                    return True
        except OSError:
            self.end_data()
            self.send(b"426 Connection closed; transfer aborted.\r\n")
            return False
        self.end_data()
        self.upstream.stored[arg] = bytes(received)
        self.send(b"226 Transfer complete.\r\n")
        return False


class ScriptedUpstream:
    """The scriptable upstream: 127.0.0.1:<ephemeral>, a thread per control connection."""

    def __init__(self, default: Script | None = None) -> None:
        self.default = default or Script()
        self.files: dict[str, bytes] = {HEALTHY_NAME: HEALTHY_DATA}
        self.stored: dict[str, bytes] = {}
        self.received: list[bytes] = []
        self.released = threading.Event()
        self.accepted = 0
        self._armed: deque[Script] = deque()
        self._conns: list[tuple[UpstreamConn, threading.Thread]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.05)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, name="scripted-upstream", daemon=True)

    def start(self) -> ScriptedUpstream:
        self._thread.start()
        return self

    def arm(self, script: Script) -> Script:
        """Apply ``script`` to the next control connection accepted."""
        with self._lock:
            self._armed.append(script)
        return script

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                script = self._armed.popleft() if self._armed else self.default
                self.accepted += 1
            conn = UpstreamConn(self, sock, script)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._conns.append((conn, thread))
            thread.start()

    @staticmethod
    def _serve(conn: UpstreamConn) -> None:
        try:
            conn.run()
        except (OSError, ValueError, IndexError):
            pass  # the peer went away or sent nonsense: this connection ends
        finally:
            conn.close_all()

    def release(self) -> None:
        """End every stall."""
        self.released.set()

    def stop(self) -> None:
        self._stopping.set()
        self.released.set()
        self._thread.join(TIMEOUT)
        self._listener.close()
        for conn, _ in self._conns:
            conn.close_all()
        for _, thread in self._conns:
            thread.join(TIMEOUT)


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    """A running scripted upstream, stopped at the end of the test."""
    server = ScriptedUpstream().start()
    yield server
    server.stop()


# ---- the victim client ----------------------------------------------------------------------
@dataclass
class Outcome:
    """What a client saw after a fault: the lines it got and how its connection ended."""

    lines: list[bytes]
    end: str  # "closed", "reset", "open" (a final error reply came, the connection stayed)

    @property
    def summary(self) -> str:
        codes = [ln[:3].decode("ascii", "replace") for ln in self.lines if ln[:3].isdigit()]
        shown = " then ".join(codes) if codes else "nothing"
        return f"{shown}, connection {self.end}" if self.end != "open" else shown


class RawClient:
    """A control connection on a raw socket, plus at most one data connection."""

    def __init__(
        self, address: tuple[str, int], source: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        self.sock = socket.create_connection(
            address, timeout=timeout, source_address=(source, 0) if source else None
        )
        self.buf = b""
        self.data: socket.socket | None = None
        self.received_data = 0
        self.pasv_address: tuple[str, int] | None = None

    @property
    def local(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def send(self, line: bytes | str) -> None:
        raw = line.encode() if isinstance(line, str) else line
        self.sock.sendall(raw if raw.endswith(b"\n") else raw + b"\r\n")

    def readline(self, timeout: float = TIMEOUT) -> bytes | None:
        """One line, or None at EOF/reset; a silent peer beyond ``timeout`` fails the test."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            except TimeoutError:
                raise AssertionError(f"client hung: no line within {timeout} s") from None
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def reply(self, timeout: float = TIMEOUT) -> bytes:
        """One complete reply (multi-line aware); fails on EOF."""
        first = self.readline(timeout)
        assert first is not None, "connection closed instead of a reply"
        lines = [first]
        if first[3:4] == b"-":
            while True:
                line = self.readline(timeout)
                assert line is not None, "connection closed inside a multi-line reply"
                lines.append(line)
                if line[:4] == first[:3] + b" ":
                    break
        return b"".join(lines)

    def cmd(self, line: str) -> bytes:
        self.send(line)
        return self.reply()

    def login(self, user: str = "victim", password: str = "victim-pw") -> None:
        assert self.reply().startswith(b"220")
        assert self.cmd(f"USER {user}").startswith(b"331")
        assert self.cmd(f"PASS {password}").startswith(b"230")

    def pasv(self) -> tuple[str, int]:
        reply = self.cmd("PASV")
        assert reply.startswith(b"227"), reply
        self.pasv_address = ftplib.parse227(reply.decode())
        return self.pasv_address

    def connect_data(self) -> socket.socket:
        assert self.pasv_address is not None
        self.data = socket.create_connection(self.pasv_address, timeout=TIMEOUT)
        return self.data

    def read_data(self, at_least: int) -> None:
        assert self.data is not None
        while self.received_data < at_least:
            chunk = self.data.recv(65536)
            assert chunk, "data connection ended early"
            self.received_data += len(chunk)

    def outcome(self, timeout: float = TIMEOUT, grace: float = 1.0) -> Outcome:
        """Wait (bounded) for a 4xx/5xx reply or the end of the connection, draining any data
        connection meanwhile; a client left hanging fails the test. After an error reply,
        wait up to ``grace`` seconds more for further lines and the close."""
        lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\n")
                lines.append(line + b"\n")
                if line[:1] in (b"4", b"5") and line[3:4] == b" ":
                    deadline = min(deadline, time.monotonic() + grace)
            left = deadline - time.monotonic()
            if left <= 0:
                if any(ln[:1] in (b"4", b"5") and ln[3:4] == b" " for ln in lines):
                    return Outcome(lines, "open")
                raise AssertionError(f"client hung: no error reply or close; got {lines}")
            watch = [self.sock] + ([self.data] if self.data is not None else [])
            ready = select.select(watch, [], [], left)[0]
            if self.data is not None and self.data in ready:
                try:
                    chunk = self.data.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.data.close()
                    self.data = None
            if self.sock in ready:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    return Outcome(lines, "reset")
                if not chunk:
                    if self.buf:
                        lines.append(self.buf)
                        self.buf = b""
                    return Outcome(lines, "closed")
                self.buf += chunk

    def rst(self) -> None:
        rst(self.data)
        rst(self.sock)
        self.data = None

    def silent_close(self) -> None:
        silent_close(self.data)
        silent_close(self.sock)
        self.data = None

    def close(self) -> None:
        for sock in (self.data, self.sock):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self.data = None


# ---- a healthy concurrent session -----------------------------------------------------------
class HealthySession(threading.Thread):
    """Logs in through the proxy and repeats checksum-verified RETR (and every fourth round a
    STOR checked on the upstream) until stopped; every completion is time-stamped."""

    def __init__(
        self, address: tuple[str, int], upstream: ScriptedUpstream, max_rounds: int = 400
    ) -> None:
        super().__init__(name="healthy-session", daemon=True)
        self.address = address
        self.upstream = upstream
        self.max_rounds = max_rounds
        self.completed: list[float] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            ftp = ftplib.FTP(timeout=TIMEOUT)
            ftp.connect(*self.address, timeout=TIMEOUT)
            ftp.login("healthy", "healthy-pw")
            for n in range(self.max_rounds):
                out = io.BytesIO()
                assert ftp.retrbinary(f"RETR {HEALTHY_NAME}", out.write).startswith("226")
                assert sha256(out.getvalue()) == HEALTHY_SHA, "healthy download corrupted"
                if n % 4 == 3:
                    name = f"healthy-{n}.bin"
                    ftp.storbinary(f"STOR {name}", io.BytesIO(HEALTHY_DATA))
                    assert sha256(self.upstream.stored[name]) == HEALTHY_SHA
                self.completed.append(time.monotonic())
                # paced: concurrency is the point, not churn (each round costs two TIME_WAITs)
                if self.stopping.wait(0.02):
                    break
            ftp.quit()
        except BaseException as exc:
            self.error = exc

    def wait_completed(self, after: float = 0.0, timeout: float = 10.0) -> None:
        """Block until a transfer completed after ``after`` (a monotonic time)."""
        deadline = time.monotonic() + timeout
        while not any(t > after for t in self.completed):
            assert self.error is None, f"healthy session failed: {self.error!r}"
            assert self.is_alive(), "healthy session ended early"
            assert time.monotonic() < deadline, "healthy session made no progress"
            time.sleep(0.01)

    def finish(self) -> None:
        self.stopping.set()
        self.join(2 * TIMEOUT)
        assert not self.is_alive(), "healthy session did not finish"
        assert self.error is None, f"healthy session failed: {self.error!r}"


# ---- the proxy under test -------------------------------------------------------------------
@dataclass
class Rig:
    """An in-process proxy with its ``RunningProxy`` at hand for inspecting internals."""

    handle: ProxyHandle
    running: Any

    @property
    def address(self) -> tuple[str, int]:
        return self.handle.address

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.handle.events

    def session_of(self, client: str, timeout: float = TIMEOUT) -> str:
        """The session id of the client at ``client`` ("host:port")."""
        return str(self.handle.wait_for("session.open", timeout, client=client)["session"])

    def events_of(self, sid: str) -> list[dict[str, Any]]:
        return [e for e in list(self.handle.events) if e.get("session") == sid]

    def close_of(self, sid: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.handle.wait_for("session.close", timeout, session=sid)

    def internal_errors(self) -> list[dict[str, Any]]:
        return [e for e in list(self.handle.events) if e["event"] == "proxy.internal_error"]

    def live(self) -> dict[str, dict[str, int]]:
        """Per live session: its data pipes, their listeners and its timers (read in the
        reactor thread)."""

        def read() -> dict[str, dict[str, int]]:
            return {
                sid: {
                    "pipes": len(proto.pipes),
                    "listeners": sum(len(p.listeners) for p in proto.pipes.values()),
                    "timers": len(proto.timers),
                }
                for sid, proto in self.running.factory.sessions.items()
            }

        return dict(in_reactor(read))

    def per_client(self) -> dict[str, int]:
        return dict(in_reactor(lambda: dict(self.running.factory.per_client)))


def start_rig(
    upstream: tuple[str, int],
    sink: Callable[[str, dict[str, Any]], None] | None = None,
    data: DataTimeouts | None = None,
    access: AccessPolicy | None = None,
    resolver: Any = None,
    connect_timeout: float = TIMEOUT,
    **session_options: Any,
) -> Rig:
    """Start a proxy in the plugin's reactor thread, like ``ftpdiag_proxy`` does, but keep the
    ``RunningProxy``. ``sink`` replaces the event list (the soak test only counts)."""
    from ftpdiag.proxy.control import ProxySettings
    from ftpdiag.proxy.server import start_proxy
    from ftpdiag.proxy.upstream import UpstreamConnector
    from ftpdiag.testing import _reactor

    settings = ProxySettings(
        upstream=upstream,
        session=replace(SessionConfig(), **session_options),
        data=data or DataTimeouts(),
        access=access or AccessPolicy(),
    )
    handle = ProxyHandle(address=("127.0.0.1", 0))

    def start() -> Any:
        reactor = _reactor()
        connector = UpstreamConnector(reactor, resolver, timeout=connect_timeout)
        return start_proxy(
            reactor, ("127.0.0.1", 0), settings, sink or handle.record, connector,
            stop_on_shutdown=False,
        )

    running = in_reactor(start)
    handle.address = running.host_port
    handle._stop = running.stop
    return Rig(handle, running)


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    """Factory fixture ``make_rig(upstream_address, **options)``; every proxy is stopped."""
    rigs: list[Rig] = []

    def make(upstream: tuple[str, int], **options: Any) -> Rig:
        rig = start_rig(upstream, **options)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.handle.stop()


def proxy_leftovers(rig: Rig, sid: str) -> list[SockInfo]:
    """Sockets this process still holds on the proxy's side of session ``sid``: its data
    listeners, its control connection to the upstream, its accepted client connection(s)."""
    events = rig.events_of(sid)
    proxy_side: set[tuple[str, int]] = set()
    client_peers: set[tuple[str, int]] = set()
    dialled: set[tuple[str, int]] = set()
    for e in events:
        if e["event"] == "data.listen":
            host, port = e["address"].rsplit(":", 1)
            proxy_side.add((host, int(port)))
        elif e["event"] == "upstream.connect":
            host, port = e["local"].rsplit(":", 1)
            proxy_side.add((host, int(port)))
        elif e["event"] == "session.open":
            host, port = e["client"].rsplit(":", 1)
            client_peers.add((host, int(port)))
        elif e["event"] == "data.passive":
            host, port = e["dialled"].rsplit(":", 1)
            dialled.add((host, int(port)))
    listen = tuple(rig.address)
    return [
        s
        for s in own_sockets()
        if s.local in proxy_side
        or (s.local == listen and s.remote in client_peers)
        or (s.remote in dialled and not s.listening)
    ]


def assert_no_leftovers(rig: Rig, sid: str, timeout: float = 3.0) -> None:
    """Session ``sid`` is gone from the factory and none of its sockets remain (bounded)."""
    wait_until(lambda: sid not in rig.live(), timeout, f"session {sid} forgotten by the factory")
    try:
        wait_until(lambda: not proxy_leftovers(rig, sid), timeout, "proxy sockets released")
    except AssertionError:
        left = proxy_leftovers(rig, sid)
        raise AssertionError(f"session {sid} left sockets open: {left}") from None


# ---- the CLI as a subprocess -----------------------------------------------------------------
class ProxyProcess:
    """``python -m ftpdiag proxy`` with a JSON log file; stderr goes to a file. Its port is read
    from its own ``proxy.listen`` record (a wildcard listen address is reached via 127.0.0.1)."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        listen: str | None = "127.0.0.1:0",
        log_format: str = "json",
        name: str = "proxy",
        log: Path | None = None,
        preexec: Callable[[], None] | None = None,
        keep_stderr: bool = True,
        wait: bool = True,
    ) -> None:
        self.log = log or tmp_path / f"{name}.jsonl"
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        cmd = [sys.executable, "-m", "ftpdiag", "proxy", "--log-file", str(self.log),
               "--log-format", log_format, *(("--listen", listen) if listen else ()), *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr if keep_stderr else subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        self.listen = self.address = ("127.0.0.1", 0)
        if wait:
            self.found_listen(self.wait_for("proxy.listen"))

    def found_listen(self, record: dict[str, Any]) -> None:
        """Take the listening address from a ``proxy.listen`` record."""
        host, port = record["listen"].rsplit(":", 1)
        host = host.strip("[]")
        self.listen = (host, int(port))
        self.address = ("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(port))

    def lines(self) -> list[str]:
        """The complete lines. A reader of a live log may see part of a record still being
        written (a write that crosses a page boundary becomes visible page by page): that tail
        is not a record yet. ``complete_lines`` checks the file ends with a line end once the
        writing has stopped."""
        if not self.log.exists():
            return []
        return [line.decode("utf-8") for line in self.log.read_bytes().split(b"\n")[:-1]]

    def records(self) -> list[dict[str, Any]]:
        """Every record; a line that is not a complete JSON object fails the test."""
        out = []
        for n, line in enumerate(self.lines()):
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"log line {n + 1} is not JSON: {line[:200]!r}") from None
            assert isinstance(record, dict), line
            out.append(record)
        return out

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records()
                if r["event"] == event and all(r.get(k) == v for k, v in match.items())]

    def wait_for(self, event: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(event, **match)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"no {event} {match}; stderr: {self.stderr_path.read_text(errors='replace')[-2000:]}"
        )

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self._stderr.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    """Factory fixture ``cli(*args, listen=..., log_format=..., name=...)``; every process is
    stopped (SIGTERM, then SIGKILL) at the end."""
    procs: list[ProxyProcess] = []

    def start(*args: str, **kwargs: Any) -> ProxyProcess:
        kwargs.setdefault("name", f"proxy{len(procs)}")
        proc = ProxyProcess(tmp_path, *args, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        try:
            proc.stop()
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.proc.wait(TIMEOUT)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- what the log said, for docs/robustness.md ---------------------------------------------
SUMMARY_FACTS = (
    "proxy.internal_error",
    "greeting.timeout",
    "control.idle_timeout",
    "protocol.line_too_long",
    "protocol.malformed_reply",
    "protocol.reply_too_long",
    "protocol.bad_address",
    "security.bounce_refused",
    "security.data_theft_refused",
    "transfer.no_completion",
    "access.refused",
)


def log_summary(events: list[dict[str, Any]]) -> str:
    """A one-cell summary of what the proxy logged for one session."""
    parts: list[str] = []
    closes = [e for e in events if e["event"] == "control.closed"]
    for e in closes[:1]:
        parts.append(f"`control.closed` {e['side']}{'' if e.get('clean') else ' (reset)'}")
    for e in events:
        if e["event"] in SUMMARY_FACTS:
            parts.append(f"`{e['event']}`")
        elif e["event"] == "data.failed":
            parts.append(f"`data.failed` {e['side']} {e['kind']}")
        elif e["event"] == "transfer.end":
            parts.append(f"`transfer.end` {e['command']} outcome {e['outcome']}")
    rules = sorted(
        {e["rule"] for e in events if e["event"] == "diagnosis" and e["severity"] != "info"}
    )
    if rules:
        parts.append("diagnosis " + ", ".join(f"`{r}`" for r in rules))
    for e in events:
        if e["event"] == "session.close":
            parts.append(f"`session.close` ({e['reason']})")
    deduped = list(dict.fromkeys(parts))
    return "; ".join(deduped) if deduped else "—"


OBSERVATIONS: list[dict[str, str]] = []


def observe(kind: str, what: str, phase: str, client_saw: str, log_said: str) -> None:
    """Record one row of docs/robustness.md (written when FTPDIAG_ROBUSTNESS_TABLE is set)."""
    OBSERVATIONS.append(
        {"kind": kind, "what": what, "phase": phase, "client": client_saw, "log": log_said}
    )


@contextlib.contextmanager
def observed_if_failing(
    kind: str, what: str, phase: str, client_saw: str, log_said: str
) -> Iterator[None]:
    """Record a row for docs/robustness.md when the block fails (the bug of an xfail test)."""
    try:
        yield
    except BaseException:
        observe(kind, what, phase, client_saw, log_said + " (bug)")
        raise


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the observed table as Markdown to $FTPDIAG_ROBUSTNESS_TABLE, if set."""
    path = os.environ.get("FTPDIAG_ROBUSTNESS_TABLE")
    if not path or not OBSERVATIONS:
        return
    order = ["Faults", "Hostile input", "Access control", "Secrets", "Log durability",
             "Long runs"]
    kinds = sorted(dict.fromkeys(o["kind"] for o in OBSERVATIONS),
                   key=lambda k: order.index(k) if k in order else len(order))
    lines = []
    for kind in kinds:
        lines += [
            f"### {kind}",
            "",
            "| fault / input | phase | what the client saw | what the log said |",
            "|---|---|---|---|",
        ]
        for o in OBSERVATIONS:
            if o["kind"] == kind:
                cells = [o["what"], o["phase"], o["client"], o["log"]]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    Path(path).write_text("\n".join(lines), encoding="utf-8")
