"""Fault injections for :class:`~tests.fake_servers.harness.FakeFTPServer`.

Each fault is a small frozen dataclass describing *one* misbehaviour, in the
spirit of the directives understood by curl's test FTP server.  A fault never
touches pyftpdlib's own classes: it contributes a freshly generated *mixin*
class (a subclass of ``FTPHandler`` for the control channel, of
``DTPHandler`` for the data channel) and the harness stacks those mixins on
top of the real handler in a per-server class, so faults compose through the
ordinary cooperative ``super()`` chain.

Ordering: faults are applied in list order, the first fault being the
outermost override.  This only matters when two faults touch the same
command (e.g. ``Unsolicited`` after a command that a later ``Delay`` slows
down: the unsolicited line then overtakes the delayed reply).

Everything here runs inside the server's IOLoop thread, so nothing may block:
delays are implemented with ``call_later`` on the channel (which pyftpdlib
cancels automatically when the channel closes) and commands that arrive while
a reply is being held back are queued and replayed in order.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ftpdiag.replay.tcp import unacked_bytes

from ._pyftpdlib import DTPHandler, FTPHandler, ThrottledDTPHandler, logger

__all__ = [
    "AbortTransferAfter",
    "Delay",
    "DropControlDuringTransfer",
    "Fault",
    "FaultGate",
    "GreetingDelay",
    "GreetingReply",
    "IdleTimeout",
    "MalformedPasv",
    "MultilineMismatch",
    "NoCompletionReply",
    "NoGreeting",
    "Reply",
    "ResetDataAfter",
    "SlowData",
    "Unsolicited",
]

#: Commands that pyftpdlib recognises even when prefixed by Telnet IP/Synch
#: garbage (it only looks at the last four characters of an unknown verb).
_URGENT_VERBS = ("ABOR", "STAT", "QUIT")

#: Upper bound on how long a reset waits for the peer to acknowledge the
#: bytes already sent, so that "N bytes then RST" is what the client sees.
_RESET_DRAIN_TIMEOUT = 2.0


# ---------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------


def _check_reply_text(text: str) -> None:
    """Reject CR/LF in reply text: an embedded newline would silently turn one
    injected reply into several and make the fault lie about what it does."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"reply text must be a single line: {text!r}")


def _check_code(code: int) -> None:
    """Reply codes must be three digits so that clients can parse the line."""
    if not 100 <= code <= 599:
        raise ValueError(f"reply code must be in 100..599, got {code}")


def _check_nonnegative(name: str, value: float) -> None:
    """Negative sizes and durations are always a mistake in a test."""
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _canonical_command(handler: FTPHandler, cmd: str, arg: str) -> str:
    """Return the verb the way pyftpdlib will dispatch it, so that a fault
    for ``"ABOR"`` also fires for a Telnet-IP-prefixed ABOR and a fault for
    ``"SITE CHMOD"`` fires for the SITE sub-command."""
    if cmd == "SITE" and arg:
        return f"SITE {arg.split(' ')[0].upper()}"
    if cmd not in handler.proto_cmds and cmd[-4:] in _URGENT_VERBS:
        return cmd[-4:]
    return cmd


class _Budget:
    """How many more times a fault may fire.

    The budget lives in the mixin generated for one server, so it is shared
    by every connection to that server: ``times=1`` means "the first matching
    command on this server misbehaves", which covers both "retry on the same
    connection" and "reconnect and retry" scenarios.  Only the IOLoop thread
    touches it, so no lock is needed.
    """

    def __init__(self, times: int | None) -> None:
        self.remaining = times

    def take(self) -> bool:
        """Consume one use; False once the fault has been used up."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class FaultGate(FTPHandler):
    """Outermost control-channel layer that lets a fault hold back replies.

    A real server that is slow to answer one command also does not answer the
    next one early.  pyftpdlib would, because it dispatches every line as soon
    as it arrives, so while a fault holds the channel (``_hold``) incoming
    commands are queued here and replayed, in order, once it is released.
    The harness always puts this class first in the generated handler's bases.
    """

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self._fault_holds = 0
        self._fault_pending: deque[tuple[str, str, str]] = deque()
        super().__init__(conn, server, ioloop=ioloop)

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        """Queue the command while a fault holds the channel, else dispatch."""
        if self._fault_holds:
            self._fault_pending.append((line, cmd, arg))
            return
        super().pre_process_command(line, cmd, arg)


def _hold(handler: FTPHandler) -> None:
    """Start holding back command processing on ``handler``."""
    handler._fault_holds += 1


def _release(handler: FTPHandler) -> None:
    """Stop holding and replay the commands that arrived in the meantime."""
    handler._fault_holds -= 1
    pending = handler._fault_pending
    while not handler._fault_holds and pending and not handler._closed:
        line, cmd, arg = pending.popleft()
        handler.pre_process_command(line, cmd, arg)


class Fault:
    """Base class of all faults.

    Subclasses override :meth:`control_mixin` and/or :meth:`dtp_mixin`; each
    call must return a *new* class so that per-server state (such as a
    ``times`` budget) is never shared between servers.
    """

    def control_mixin(self) -> type[FTPHandler] | None:
        """Return an ``FTPHandler`` subclass to stack on the control channel."""
        return None

    def dtp_mixin(self) -> type[DTPHandler] | None:
        """Return a ``DTPHandler`` subclass to stack on the data channel."""
        return None


# ---------------------------------------------------------------------------
# Data-channel cut-offs (shared by the "after N bytes" faults)
# ---------------------------------------------------------------------------


def _sending_file(dtp: DTPHandler) -> bool:
    """True when the data channel carries a RETR.

    ``dtp.cmd`` is not reliable for this: when the client connects the data
    channel before sending RETR (ftplib and curl both do), pyftpdlib pushes the
    file *before* setting ``cmd``.  A file object on a sending channel only
    exists for RETR (listings have none), so that is what we test.
    """
    return not dtp.receive and dtp.file_obj is not None


def _trip(dtp: DTPHandler, key: type, action: Callable[[DTPHandler], None]) -> None:
    """Freeze the data channel and run ``action`` on the next loop iteration.

    The action is deferred because the cut-off is detected deep inside
    pyftpdlib/asynchat send/recv code, which keeps using the channel (and the
    control channel's ``data_channel`` attribute) after ``send()`` returns;
    closing things there leads to AttributeErrors inside pyftpdlib.  The
    channel is unregistered from the IOLoop meanwhile so no further bytes move
    and the poller does not spin on a level-triggered event.
    """
    tripped: set[type] = dtp.__dict__.setdefault("_fault_tripped", set())
    tripped.add(key)
    dtp.del_channel()
    dtp.call_later(0, action, dtp)


def _is_tripped(dtp: DTPHandler, key: type) -> bool:
    """Whether the cut-off identified by ``key`` already fired on ``dtp``."""
    return key in dtp.__dict__.get("_fault_tripped", ())


def _cutoff_mixin(
    limit: int,
    *,
    on_send: bool,
    on_receive: bool,
    action: Callable[[DTPHandler], None],
) -> type[DTPHandler]:
    """Build a data-channel mixin that moves exactly ``limit`` bytes and then
    runs ``action``.

    Sending (RETR) is capped in ``send()``; receiving (STOR/APPE/STOU) is
    capped by shrinking the ``recv()`` size, so the byte count on the wire is
    exact in both directions.  If the transfer is shorter than ``limit`` the
    cut-off never fires and the transfer completes normally.
    """

    class _Cutoff(DTPHandler):
        def use_sendfile(self) -> bool:
            """Disable sendfile(2): it bypasses ``send()`` and the byte cap."""
            return False

        def send(self, data: bytes) -> int:
            if not (on_send and _sending_file(self)):
                return int(super().send(data))
            if _is_tripped(self, _Cutoff):
                return 0
            remaining = limit - self.tot_bytes_sent
            sent = int(super().send(data[:remaining])) if remaining > 0 else 0
            if self.tot_bytes_sent >= limit and not self._closed:
                _trip(self, _Cutoff, action)
            return sent

        def recv(self, buffer_size: int) -> bytes:
            if on_receive and self.receive:
                remaining = limit - self.tot_bytes_received
                buffer_size = max(1, min(int(buffer_size), remaining))
            data: bytes = super().recv(buffer_size)
            return data

        def handle_read_event(self) -> None:
            # DTPHandler aliases handle_read_event = handle_read at class
            # level, so overriding handle_read alone would not be seen.
            if not (on_receive and self.receive):
                super().handle_read_event()
                return
            if _is_tripped(self, _Cutoff):
                return
            if self.tot_bytes_received >= limit:
                _trip(self, _Cutoff, action)
                return
            super().handle_read_event()
            if not self._closed and self.tot_bytes_received >= limit:
                _trip(self, _Cutoff, action)

    return _Cutoff


# ---------------------------------------------------------------------------
# Control-channel faults
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply(Fault):
    """Answer ``command`` with ``code text`` instead of executing it.

    ``times`` limits how often (per server, across connections) the fault
    fires; ``None`` means always.  ``close=True`` closes the control
    connection after the reply, as real servers do after a 421.  The command
    is intercepted before pyftpdlib's login check, so USER/PASS can be faked.
    """

    command: str
    code: int = 500
    text: str = "Command refused by fault injection."
    times: int | None = None
    close: bool = False

    def __post_init__(self) -> None:
        _check_code(self.code)
        _check_reply_text(self.text)
        if self.times is not None:
            _check_nonnegative("times", self.times)

    def control_mixin(self) -> type[FTPHandler]:
        wanted = self.command.upper()
        reply = f"{self.code} {self.text}"
        close = self.close
        budget = _Budget(self.times)

        class _Reply(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if _canonical_command(self, cmd, arg) == wanted and budget.take():
                    self.respond(reply)
                    if close:
                        self.close_when_done()
                    return
                super().pre_process_command(line, cmd, arg)

        return _Reply


@dataclass(frozen=True)
class Delay(Fault):
    """Process ``command`` (and hence send its reply) ``seconds`` late.

    The IOLoop keeps running (``call_later``); commands the client pipelines
    meanwhile are queued and answered afterwards, in order, like a slow but
    sequential server.  ``times`` works as for :class:`Reply`.
    """

    command: str
    seconds: float = 0.5
    times: int | None = None

    def __post_init__(self) -> None:
        _check_nonnegative("seconds", self.seconds)
        if self.times is not None:
            _check_nonnegative("times", self.times)

    def control_mixin(self) -> type[FTPHandler]:
        wanted = self.command.upper()
        seconds = self.seconds
        budget = _Budget(self.times)

        class _Delay(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if _canonical_command(self, cmd, arg) != wanted or not budget.take():
                    super().pre_process_command(line, cmd, arg)
                    return
                parent = super().pre_process_command

                def run_late() -> None:
                    try:
                        parent(line, cmd, arg)
                    finally:
                        _release(self)

                _hold(self)
                self.call_later(seconds, run_late)

        return _Delay


@dataclass(frozen=True)
class NoGreeting(Fault):
    """Accept the TCP connection and never say anything.

    Commands sent by the client are read and silently dropped (a hung server),
    so the client's own timeout is what ends the session, or the server's
    ``stop()``, which closes the socket (the client then sees EOF).
    """

    def control_mixin(self) -> type[FTPHandler]:
        class _NoGreeting(FTPHandler):
            def handle(self) -> None:
                self.on_connect()

            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                return

        return _NoGreeting


@dataclass(frozen=True)
class GreetingDelay(Fault):
    """Send a preliminary ``120`` at once and the real ``220`` after ``seconds``.

    RFC 959 allows this; many clients mishandle it (ftplib takes the 120 as the
    welcome and then reads the 220 as the reply to USER).  Commands sent before
    the 220 are held and answered after it.
    """

    seconds: float = 0.5
    text: str = "Service ready in a few seconds."

    def __post_init__(self) -> None:
        _check_nonnegative("seconds", self.seconds)
        _check_reply_text(self.text)

    def control_mixin(self) -> type[FTPHandler]:
        seconds = self.seconds
        preliminary = f"120 {self.text}"

        class _GreetingDelay(FTPHandler):
            def handle(self) -> None:
                parent = super().handle

                def greet() -> None:
                    try:
                        parent()
                    finally:
                        _release(self)

                self.respond(preliminary)
                _hold(self)
                self.call_later(seconds, greet)

        return _GreetingDelay


@dataclass(frozen=True)
class GreetingReply(Fault):
    """Greet with ``code text`` instead of 220 and (by default) hang up.

    Models "421 Too many connections" style refusals that happen before any
    command is exchanged.
    """

    code: int = 421
    text: str = "Too many connections"
    close: bool = True

    def __post_init__(self) -> None:
        _check_code(self.code)
        _check_reply_text(self.text)

    def control_mixin(self) -> type[FTPHandler]:
        greeting = f"{self.code} {self.text}"
        close = self.close

        class _GreetingReply(FTPHandler):
            def handle(self) -> None:
                self.on_connect()
                self.respond(greeting)
                if close:
                    self.close_when_done()

        return _GreetingReply


@dataclass(frozen=True)
class MalformedPasv(Fault):
    """Answer ``command`` (PASV by default) with the raw line ``text``.

    No data listener is opened; ``text`` is sent verbatim, so it may contain
    any code, e.g. ``MalformedPasv("229 Entering Extended Passive Mode (|||x|)",
    command="EPSV")``.
    """

    text: str = "227 Entering Passive Mode (garbage)"
    command: str = "PASV"

    def __post_init__(self) -> None:
        _check_reply_text(self.text)

    def control_mixin(self) -> type[FTPHandler]:
        wanted = self.command.upper()
        line_out = self.text

        class _MalformedPasv(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if _canonical_command(self, cmd, arg) == wanted:
                    self.respond(line_out)
                    return
                super().pre_process_command(line, cmd, arg)

        return _MalformedPasv


@dataclass(frozen=True)
class IdleTimeout(Fault):
    """Shorten the control-channel idle timeout to ``seconds``.

    pyftpdlib then sends ``421 Control connection timed out.`` and closes.  The
    timer restarts on every received command line and is suspended while a
    data transfer is in progress (pyftpdlib behaviour).
    """

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("seconds must be > 0 (0 would disable the timeout)")

    def control_mixin(self) -> type[FTPHandler]:
        return type("_IdleTimeout", (FTPHandler,), {"timeout": self.seconds})


@dataclass(frozen=True)
class Unsolicited(Fault):
    """Send the extra line ``text`` right after the reply to ``after_command``.

    With ``after_command=None`` the line follows the 220 greeting.  A client
    reading replies one per command is desynchronised by one from then on.
    """

    text: str = "200 Surprise"
    after_command: str | None = "NOOP"

    def __post_init__(self) -> None:
        _check_reply_text(self.text)

    def control_mixin(self) -> type[FTPHandler]:
        wanted = self.after_command.upper() if self.after_command else None
        extra = self.text

        class _Unsolicited(FTPHandler):
            def handle(self) -> None:
                super().handle()
                if wanted is None and not self._closed:
                    self.respond(extra)

            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                matched = _canonical_command(self, cmd, arg) == wanted
                super().pre_process_command(line, cmd, arg)
                if matched and not self._closed:
                    self.respond(extra)

        return _Unsolicited


@dataclass(frozen=True)
class MultilineMismatch(Fault):
    """Answer ``command`` with a multi-line reply that ends with another code.

    RFC 959 says a multi-line reply ends with a line starting with the *same*
    code followed by a space; a strict client (ftplib) therefore keeps reading
    forever, until its timeout.
    """

    command: str = "HELP"
    first_code: int = 214
    last_code: int = 211

    def __post_init__(self) -> None:
        _check_code(self.first_code)
        _check_code(self.last_code)
        if self.first_code == self.last_code:
            raise ValueError("first_code and last_code must differ")

    def control_mixin(self) -> type[FTPHandler]:
        wanted = self.command.upper()
        first = f"{self.first_code}-Multi-line reply starts here.\r\n"
        middle = " This line continues the multi-line reply.\r\n"
        last = f"{self.last_code} Multi-line reply ends with a different code."

        class _MultilineMismatch(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if _canonical_command(self, cmd, arg) == wanted:
                    self.push(first)
                    self.push(middle)
                    self.respond(last)
                    return
                super().pre_process_command(line, cmd, arg)

        return _MultilineMismatch


# ---------------------------------------------------------------------------
# Data-channel faults
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AbortTransferAfter(Fault):
    """On RETR send ``nbytes`` of the file, close the data connection normally
    (FIN) and reply ``code text`` (426 by default): the transfer did not finish.

    The cut-off fires once ``nbytes`` have been sent, so a file of exactly
    ``nbytes`` bytes is delivered whole and still answered with 426; a shorter
    file completes normally with 226.
    """

    nbytes: int
    code: int = 426
    text: str = "Connection closed; transfer aborted."

    def __post_init__(self) -> None:
        _check_nonnegative("nbytes", self.nbytes)
        _check_code(self.code)
        _check_reply_text(self.text)

    def dtp_mixin(self) -> type[DTPHandler]:
        reply = f"{self.code} {self.text}"

        def abort(dtp: DTPHandler) -> None:
            # DTPHandler.close() closes the socket *then* sends _resp, the
            # order RFC 959 requires.
            dtp._resp = (reply, logger.info)
            dtp.close()

        return _cutoff_mixin(self.nbytes, on_send=True, on_receive=False, action=abort)


@dataclass(frozen=True)
class ResetDataAfter(Fault):
    """On RETR/STOR/APPE/STOU reset the data connection after ``nbytes``.

    The socket is closed with ``SO_LINGER {1, 0}`` so the kernel sends a TCP
    RST instead of a FIN; then ``426 text`` is sent on the control channel.
    For downloads the server first waits (up to 2 s) until the client has
    acknowledged the ``nbytes`` already sent, so on Linux the client reads
    exactly ``nbytes`` and then gets ``ConnectionResetError``.  For uploads the
    server keeps exactly ``nbytes`` of the file; the client's send fails with
    ``ConnectionResetError`` or ``BrokenPipeError`` (if its data still fits in
    socket buffers it may only notice via the 426).
    """

    nbytes: int
    text: str = "Connection reset; transfer aborted."

    def __post_init__(self) -> None:
        _check_nonnegative("nbytes", self.nbytes)
        _check_reply_text(self.text)

    def dtp_mixin(self) -> type[DTPHandler]:
        reply = f"426 {self.text}"

        def reset(dtp: DTPHandler) -> None:
            deadline = time.monotonic() + _RESET_DRAIN_TIMEOUT

            def attempt() -> None:
                if dtp._closed:
                    return
                if (
                    not dtp.receive
                    and unacked_bytes(dtp.socket) > 0
                    and time.monotonic() < deadline
                ):
                    dtp.call_later(0.005, attempt)
                    return
                # If the peer is already gone, closing is all that is left.
                with contextlib.suppress(OSError):
                    dtp.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                dtp._resp = (reply, logger.info)
                dtp.close()

            attempt()

        return _cutoff_mixin(self.nbytes, on_send=True, on_receive=True, action=reset)


@dataclass(frozen=True)
class DropControlDuringTransfer(Fault):
    """During RETR, close the *control* connection after ``after_bytes``.

    The data connection stops too: pyftpdlib's ``FTPHandler.close()`` always
    closes its data channel, so the client reads exactly ``after_bytes`` then
    EOF on the data socket, and EOF (no 226/426) on the control socket.
    """

    after_bytes: int

    def __post_init__(self) -> None:
        _check_nonnegative("after_bytes", self.after_bytes)

    def dtp_mixin(self) -> type[DTPHandler]:
        def drop(dtp: DTPHandler) -> None:
            dtp.cmd_channel.close()

        return _cutoff_mixin(self.after_bytes, on_send=True, on_receive=False, action=drop)


@dataclass(frozen=True)
class NoCompletionReply(Fault):
    """Complete the transfer on the data side but never send the ``226``.

    Only the successful-completion reply is suppressed (426 and friends still
    go out) and the control channel keeps answering later commands, so the next
    reply the client reads belongs to its next command.  ``commands`` restricts
    the fault to some transfer verbs (e.g. ``("RETR",)``); empty means all
    data transfers, listings included.
    """

    commands: tuple[str, ...] = ()

    def dtp_mixin(self) -> type[DTPHandler]:
        wanted = frozenset(c.upper() for c in self.commands)

        class _NoCompletionReply(DTPHandler):
            def close(self) -> None:
                resp = self._resp
                if resp and resp[0].startswith("226"):
                    cmd = self.cmd or ("RETR" if _sending_file(self) else "")
                    if not wanted or cmd in wanted:
                        self._resp = ()
                super().close()

        return _NoCompletionReply


@dataclass(frozen=True)
class SlowData(Fault):
    """Throttle the data channel to about ``bytes_per_second`` both ways.

    Uses pyftpdlib's ``ThrottledDTPHandler``, which lets the first second's
    worth of bytes through in a burst and then sleeps the channel, so the
    rate is only accurate over transfers of several seconds' worth of data.
    """

    bytes_per_second: int

    def __post_init__(self) -> None:
        if self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0")

    def dtp_mixin(self) -> type[DTPHandler]:
        limit = self.bytes_per_second
        return type(
            "_SlowData",
            (ThrottledDTPHandler,),
            {"read_limit": limit, "write_limit": limit},
        )
