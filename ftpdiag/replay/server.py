"""The replay server: a pyftpdlib handler that answers from a recorded script.

pyftpdlib accepts the control connections and runs the IOLoop (its own, on a thread, see
``sandbox.HandlerThread``); the handler overrides the line dispatch, so no command reaches
pyftpdlib's file system code: every answer is a recorded one (``replay/script.py`` decides
which), sent as recorded bytes. Data connections are small dispatchers on the same IOLoop
that move the recorded number of bytes and end the way the recorded server's end did.

Nothing reaches the network: passive listeners bind to the control connection's own local
address, and an active-mode connection is dialled only to a loopback address.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import Acceptor, AsyncChat, Connector

from ftpdiag.core.addresses import (
    parse_eprt_arg,
    parse_port_arg,
    rewrite_epsv_text,
    rewrite_pasv_text,
)
from ftpdiag.replay.script import (
    REPLIES,
    TRANSFER_VERBS,
    UNRECORDED,
    Matcher,
    Mismatch,
    RecordedReply,
    Script,
    Step,
    Transfer,
    Unrecorded,
)
from ftpdiag.replay.tcp import is_loopback, unacked_bytes
from ftpdiag.sandbox import HandlerThread

Report = Callable[[str, dict[str, Any]], None]
#: One link of a step's chain: does its part, then calls ``done``.
Action = Callable[[Callable[[], None]], None]
_CHUNK = 1 << 16
#: Filler for a transfer whose bytes were not recorded: text lines, so listings still parse.
_FILLER = (b"ftpdiag replay filler: the recorded transfer's bytes were not kept.\r\n" * 1024)[
    :_CHUNK
]
#: How long a reset waits for the peer to acknowledge the bytes already sent.
_RESET_DRAIN = 2.0
#: Upper bound on waiting for a data connection the recorded one had (then it counts as never).
_DATA_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How a script is served."""

    #: ``fast``: every reply at once; ``recorded``: at the recorded latencies, divided by speed.
    timing: str = "fast"
    speed: float = 1.0
    #: Send the recorded passive addresses unchanged (reproduces NAT faults; nothing listens).
    keep_addresses: bool = False
    #: Where else to look for recorded data files: the input's directory, so a log sent with
    #: its ``--record-data`` files (in one folder) replays anywhere.
    data_dir: Path | None = None


def _data_file(transfer: Transfer, data_dir: Path | None) -> Path | None:
    if transfer.data_file is None:
        return None
    recorded = Path(transfer.data_file)
    for candidate in (recorded, data_dir / recorded.name if data_dir else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _payload(transfer: Transfer, data_dir: Path | None) -> Iterator[bytes]:
    """The bytes of a download: the recorded file's (as far as it was kept), then filler,
    ``size`` in all."""
    left = transfer.size
    path = _data_file(transfer, data_dir)
    if path is not None:
        with contextlib.suppress(OSError), path.open("rb") as fh:
            while left and (chunk := fh.read(min(left, _CHUNK))):
                left -= len(chunk)
                yield chunk
    while left:
        chunk = _FILLER[: min(left, _CHUNK)]
        left -= len(chunk)
        yield chunk


class _DataConnection(AsyncChat):  # type: ignore[misc]
    """One data connection: idle until a transfer runs on it, then plays that transfer."""

    def __init__(self, sock: socket.socket, owner: ReplayHandler) -> None:
        super().__init__(sock, ioloop=owner.ioloop)
        self.owner = owner
        self.transfer: Transfer | None = None
        self.on_end: Callable[[], None] | None = None
        self.received = 0
        self.payload: Iterator[bytes] = iter(())
        self.pending = b""
        self.sent = 0
        self.pace: tuple[float, float] | None = None
        self.del_channel()  # nothing moves before the transfer command

    def start(self, transfer: Transfer, on_end: Callable[[], None]) -> None:
        self.transfer, self.on_end = transfer, on_end
        if transfer.direction == "upload":
            self.add_channel(events=self.ioloop.READ)
        else:
            self.payload = _payload(transfer, self.owner.options.data_dir)
            options = self.owner.options
            if options.timing == "recorded" and transfer.duration > 0:
                self.pace = (time.monotonic(), transfer.duration / options.speed)
            self.add_channel(events=self.ioloop.WRITE)

    def _ahead(self) -> bool:
        """With recorded timing, a download keeps the recorded rate: ahead of it, the
        connection pauses for a moment instead of sending."""
        if self.pace is None or self.transfer is None:
            return False
        began, seconds = self.pace
        due = self.transfer.size * min(1.0, (time.monotonic() - began) / seconds)
        if self.sent < due or self.sent >= self.transfer.size:
            return False
        self.del_channel()
        self.call_later(0.01, self.add_channel, events=self.ioloop.WRITE)
        return True

    # pyftpdlib's IOLoop asks these before dispatching an event it polled for.
    def readable(self) -> bool:
        return self.transfer is not None and self.transfer.direction == "upload"

    def writable(self) -> bool:
        return self.transfer is not None and self.transfer.direction == "download"

    def handle_read(self) -> None:
        try:
            data = self.socket.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended()
            return
        self.received += len(data)
        transfer = self.transfer
        if transfer is not None and transfer.ending != "eof" and self.received >= transfer.size:
            self._finish(transfer)

    def handle_write(self) -> None:
        transfer = self.transfer
        assert transfer is not None
        if self._ahead():
            return
        if not self.pending:
            chunk = next(self.payload, None)
            if chunk is None:
                self._finish(transfer)
                return
            self.pending = chunk
        try:
            sent = self.socket.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self._ended()
            return
        self.pending = self.pending[sent:]
        self.sent += sent

    def _finish(self, transfer: Transfer) -> None:
        """The recorded bytes moved: end the way the recorded server's end did."""
        if transfer.ending == "hold":
            self.del_channel()  # a stall: nothing more, the connection left open
            self._notify()
        elif transfer.ending == "reset":
            self.del_channel()
            self._reset(time.monotonic() + _RESET_DRAIN)
        else:
            self._ended()

    def _reset(self, deadline: float) -> None:
        if self._closed:
            return
        if unacked_bytes(self.socket) > 0 and time.monotonic() < deadline:
            self.call_later(0.005, self._reset, deadline)
            return
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._ended()

    def handle_close(self) -> None:
        self._ended()

    def handle_error(self) -> None:
        self._ended()

    def _ended(self) -> None:
        self.close()
        self._notify()

    def _notify(self) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()


class _PassiveListener(Acceptor):  # type: ignore[misc]
    """A passive port on the control connection's local address; accepts one connection."""

    def __init__(self, owner: ReplayHandler, accept: bool) -> None:
        super().__init__(ioloop=owner.ioloop)
        host = owner.socket.getsockname()[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.create_socket(family, socket.SOCK_STREAM)
        self.bind((host, 0))
        self.listen(1)
        self.port: int = self.socket.getsockname()[1]
        self.owner = owner
        if not accept:
            self.del_channel()  # the recorded server never accepted: the kernel's queue only

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.close()
        self.owner.data_connected(_DataConnection(sock, self.owner))

    def close_gently(self) -> None:
        """Close, first taking a connection the kernel already completed, and closing it
        with a FIN: a listener closed over its queue would reset it instead."""
        with contextlib.suppress(OSError):
            sock, _ = self.socket.accept()
            sock.close()
        self.close()


class _ActiveDialler(Connector):  # type: ignore[misc]
    """Connects to the client's PORT/EPRT address (loopback only, checked by the caller)."""

    def __init__(self, owner: ReplayHandler, address: tuple[str, int]) -> None:
        super().__init__(ioloop=owner.ioloop)
        self.owner = owner
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.create_socket(family, socket.SOCK_STREAM)
        try:
            self.connect(address)
        except OSError:
            self.call_later(0, self.handle_error)

    def handle_connect(self) -> None:
        sock: socket.socket = getattr(self, "socket")  # noqa: B009 - asyncore's untyped attribute
        self.del_channel()
        self._fileno = None
        self.socket = None
        self.connected = False
        self.handed_over = True
        self.owner.data_connected(_DataConnection(sock, self.owner))

    def handle_write(self) -> None:
        """asyncore writes right after connecting; the socket has moved on by then."""

    def handle_error(self) -> None:
        self.close()
        if not getattr(self, "handed_over", False):
            self.owner.data_connected(None)

    def handle_close(self) -> None:
        self.handle_error()


class ReplayHandler(FTPHandler):  # type: ignore[misc]
    """One replayed control connection. Class attributes are set per server (a subclass per
    replay, never a mutation of this class)."""

    script: Script
    options: ReplayOptions = ReplayOptions()
    report: Report = staticmethod(lambda event, fields: None)

    # ---- connection ------------------------------------------------------------------------
    def handle(self) -> None:
        self.matcher = Matcher(self.script)
        self.queue: deque[str] = deque()
        self.busy = False
        self.listener: _PassiveListener | None = None
        self.active: tuple[str, int] | None = None
        self.data: _DataConnection | None = None
        self.used: list[_DataConnection] = []
        self.waiting_data: Callable[[_DataConnection | None], None] | None = None
        self.on_connect()
        started = time.monotonic()
        actions = [self._reply_action(r, started) for r in self.script.greeting]
        if self.script.close_after_greeting:
            actions.append(self._close_action)
        self._run(actions)

    def found_terminator(self) -> None:
        line = self.decode(b"".join(self._in_buffer))
        self._in_buffer.clear()
        self._in_buffer_len = 0
        if self.busy:
            self.queue.append(line)  # a server answers in order: after the current step
            return
        self._command(line)

    def _command(self, line: str) -> None:
        verb, _, arg = line.lstrip().partition(" ")
        verb = verb.upper()[-4:] if verb.upper()[-4:] in ("ABOR", "STAT") else verb.upper()
        started = time.monotonic()
        found = self.matcher.match(verb, arg)
        if isinstance(found, Mismatch):
            self.report("replay.unmatched", {"expected": found.expected, "actual": found.actual})
            self._send(REPLIES["unmatched"].format(**_shown(found)))
            return
        if isinstance(found, Unrecorded):
            if verb == "QUIT":
                self._send(REPLIES["quit"])
                self.close_when_done()
                return
            self.report("replay.unrecorded", {"verb": verb, "arg": arg})
            self._send(UNRECORDED.get(verb) or REPLIES["unrecorded"].format(verb=verb))
            return
        if verb in ("PORT", "EPRT"):
            self.active = self._port_target(verb, arg)
            self._close_data()
        elif found.transfer is not None and self._dial_refused(found.transfer):
            return
        self._run(self._step_actions(found, started))

    def _dial_refused(self, transfer: Transfer) -> bool:
        """Active mode toward an address that is not loopback: the replay never dials it;
        it says so (425) instead of playing the step, whose replies describe a transfer."""
        if self.data is not None or self.listener is not None or self.active is None:
            return False
        if transfer.ending in ("never", "refused") or is_loopback(self.active[0]):
            return False
        address = f"{self.active[0]}:{self.active[1]}"
        self.report("replay.refused_dial", {"address": address})
        self._send(REPLIES["refused_dial"].format(address=address))
        return True

    # ---- steps as a chain of actions ----------------------------------------------------------
    def _run(self, actions: list[Action]) -> None:
        self.busy = True
        pending = deque(actions)

        def advance() -> None:
            if self._closed:
                return
            if pending:
                pending.popleft()(advance)
                return
            self.busy = False
            while self.queue and not self.busy and not self._closed:
                self._command(self.queue.popleft())

        advance()

    def _step_actions(self, step: Step, started: float) -> list[Action]:
        actions: list[Action] = []
        if step.dial_now and self.active is not None and is_loopback(self.active[0]):
            actions.append(self._dial_now)
        actions += [self._reply_action(r, started, step) for r in step.preliminary]
        transfer = step.transfer
        if transfer is not None:
            actions.append(lambda done: self._transfer(transfer, done))
        elif step.verb in TRANSFER_VERBS:
            actions.append(self._no_transfer)
        actions += [self._reply_action(r, started, step) for r in step.final]
        if step.close:
            actions.append(self._close_action)
        return actions

    def _reply_action(
        self, reply: RecordedReply, started: float, step: Step | None = None
    ) -> Action:
        def act(done: Callable[[], None]) -> None:
            wait = 0.0
            if self.options.timing == "recorded":
                wait = started + reply.at / self.options.speed - time.monotonic()

            def send() -> None:
                self._push(self._rewritten(reply, step))
                done()

            if wait > 0:
                self.call_later(wait, send)
            else:
                send()

        return act

    def _dial_now(self, done: Callable[[], None]) -> None:
        """Connect back before answering PORT, as the recorded server did."""
        assert self.active is not None

        def connected(conn: _DataConnection | None) -> None:
            done()

        self.waiting_data = connected
        _ActiveDialler(self, self.active)

    def _no_transfer(self, done: Callable[[], None]) -> None:
        """Refused before any data moved (550, 425): the data connection is just closed."""
        self._close_data()
        done()

    def _close_action(self, done: Callable[[], None]) -> None:
        self.close_when_done()

    def _rewritten(self, reply: RecordedReply, step: Step | None) -> bytes:
        """A passive reply names a live loopback listener instead of the recorded address."""
        if step is None or step.verb not in ("PASV", "EPSV") or reply.code not in (227, 229):
            return reply.wire
        if self.options.keep_addresses:
            return reply.wire
        upcoming = self.matcher.upcoming_transfer()
        refused = upcoming is not None and upcoming.ending == "refused"
        self._close_data()
        accept = upcoming is None or upcoming.ending != "never"
        self.listener = _PassiveListener(self, accept)
        port = self.listener.port
        if refused:
            self.listener.close()  # the recorded server refused the connection: nothing listens
            self.listener = None
        host = self.socket.getsockname()[0]
        try:
            if reply.code == 227:
                text = rewrite_pasv_text(reply.text, host, port)
            else:
                text = rewrite_epsv_text(reply.text, port)
        except ValueError:
            return reply.wire
        return RecordedReply(reply.code, text, reply.at).wire

    # ---- data connections ------------------------------------------------------------------
    def _port_target(self, verb: str, arg: str) -> tuple[str, int] | None:
        try:
            return parse_port_arg(arg) if verb == "PORT" else parse_eprt_arg(arg)
        except ValueError:
            return None

    def _transfer(self, transfer: Transfer, done: Callable[[], None]) -> None:
        if transfer.ending in ("never", "refused"):
            done()  # the recorded server's end never came: only the replies follow
            return

        def run(conn: _DataConnection | None) -> None:
            if conn is None:
                done()
                return
            self.data = None
            self.used.append(conn)  # a held connection stays open until the session ends
            conn.start(transfer, done)

        if self.data is not None:
            run(self.data)
            return
        self.waiting_data = run
        if self.listener is None and self.active is not None:
            _ActiveDialler(self, self.active)  # loopback: checked by _dial_refused
        elif self.listener is None:
            self.waiting_data = None
            done()
            return
        self.call_later(_DATA_WAIT, self._data_wait_over)

    def _data_wait_over(self) -> None:
        waiting, self.waiting_data = self.waiting_data, None
        if waiting is not None:
            waiting(None)

    def data_connected(self, conn: _DataConnection | None) -> None:
        self.listener = None
        waiting, self.waiting_data = self.waiting_data, None
        if conn is not None and self._closed:
            conn.close()
            return
        self.data = conn
        if waiting is not None:
            waiting(conn)

    def _close_data(self) -> None:
        if self.listener is not None:
            self.listener.close_gently()
            self.listener = None
        if self.data is not None:
            self.data.close()
            self.data = None

    # ---- output ----------------------------------------------------------------------------
    def _push(self, data: bytes) -> None:
        AsyncChat.push(self, data)

    def _send(self, line: str) -> None:
        self._push(f"{line}\r\n".encode())

    def close(self) -> None:
        if getattr(self, "matcher", None) is not None:
            self._close_data()
            self.waiting_data = None
            for conn in self.used:
                conn.close()
        super().close()


def _shown(found: Mismatch) -> dict[str, str]:
    return {"actual": found.actual, "expected": found.expected or "the end of the session"}


class ReplayServer(HandlerThread):
    """A replay on its own IOLoop thread: ``ReplayServer(script, report=...).start()``."""

    def __init__(
        self,
        script: Script,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        options: ReplayOptions | None = None,
        report: Report | None = None,
    ) -> None:
        namespace = {
            "script": script,
            "options": options or ReplayOptions(),
            "report": staticmethod(report or (lambda event, fields: None)),
            "timeout": 0,
        }
        super().__init__(type("Replay", (ReplayHandler,), namespace), *listen)
        self.script = script
