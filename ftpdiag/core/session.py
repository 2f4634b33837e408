"""The control-session state machine: one client, one upstream server, any number of transfers.

``Session.handle(event)`` takes one input from ``events`` and returns the outputs the glue must
carry out, in order. The session is the conversation's spine: it queues the client's lines
while a gate holds them, dispatches each command, pairs every reply with the command it
answers (``pairing.py``), and runs the session's lifecycle and timers. The rest lives in
components it composes, each in its own module:

- ``outbox.py``: the ordered outputs, the replies held behind a transfer's data, the bytes
  that wait for the server's control connection;
- ``datasetup.py``: PASV/EPSV/PORT/EPRT rewritten through the proxy and translated between
  passive and active mode, and the gates on the client's lines while listeners bind and the
  proxy dials;
- ``transferflow.py``: a transfer from its command to its final reply (held until the relayed
  data has been delivered: the client must never see ``226`` before the last byte);
- ``ftps.py``: AUTH TLS, PBSZ and PROT on either side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from ftpdiag.core import addresses as addr
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.datasetup import DataSetups
from ftpdiag.core.events import (
    GREETING_TIMER,
    IDLE_TIMER,
    Address,
    BlindTraffic,
    CancelTimer,
    CloseControl,
    ControlClosed,
    DataClosed,
    DataConnected,
    DataFailed,
    DataListening,
    DataProgress,
    DataRejected,
    DataTally,
    FromClient,
    FromServer,
    HostResolved,
    Input,
    Output,
    Shutdown,
    Side,
    StartTimer,
    TimerFired,
    TimerKind,
    TLSEstablished,
    TLSFailed,
    UpstreamConnected,
    UpstreamFailed,
)
from ftpdiag.core.framing import LineSplitter, OverlongLine, line_text
from ftpdiag.core.ftps import FTPS
from ftpdiag.core.gateway import Gateway
from ftpdiag.core.messages import (
    REDACTED,
    SECRET_VERBS,
    Command,
    MalformedReply,
    OversizedReply,
    Reply,
    ReplyAssembler,
    parse_command,
)
from ftpdiag.core.outbox import Outbox
from ftpdiag.core.pairing import Pairing, Pending, Purpose
from ftpdiag.core.transferflow import Transfers
from ftpdiag.core.transfers import TRANSFER_VERBS


class Phase(Enum):
    """The session's phase."""

    CONNECTING = "connecting"  # the control connection to the server is not up yet
    GREETING = "greeting"  # it is up; the server's 220 has not come
    OPEN = "open"  # the conversation runs
    CLOSED = "closed"  # ``session.close`` is logged: every later input is ignored


class Gate(Enum):
    """Why the client's next line waits in the queue instead of being dispatched."""

    CLOSED = "closed"  # the session is over
    UPSTREAM_TLS = "upstream TLS"  # the proxy sets up TLS with the server on its own
    ROUTING = "routing"  # the gateway resolves and dials the server the client chose
    LISTENING = "listening"  # the proxy's data listeners are being bound
    DIALLING = "dialling"  # a transfer command waits for the dial to the server's port


PASSIVE_VERBS = frozenset({"PASV", "EPSV"})
ACTIVE_VERBS = frozenset({"PORT", "EPRT"})
UNSUPPORTED = {"LPRT": "EPRT", "LPSV": "EPSV"}


@dataclass(slots=True)
class _Counters:
    commands: int = 0
    replies: int = 0
    by_class: dict[str, int] = field(default_factory=dict)


def _loggable_head(raw: bytes) -> str:
    """The start of an over-long client line for the log: a PASS/ACCT line shows no secret."""
    command = parse_command(raw)
    if command.verb in SECRET_VERBS:
        return f"{command.verb} {REDACTED}"
    return line_text(raw)[:40]


class Session:
    """One proxied FTP session, sans IO."""

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        client_local: Address,
        upstream: Address,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.ends = addr.Endpoints(client, client_local, upstream)
        self.clock = clock
        self.started = clock()
        self.phase = Phase.CONNECTING
        self.logged_in = False
        self.type = "A"
        self.rest = 0
        self.out = Outbox()
        self.pairing = Pairing(self.out, clock, self.started)
        self.ftps = FTPS(config, self.out, self.pairing, self)
        self.gateway = Gateway(config, self.out, self.ends) if config.route_by_user else None
        self.data = DataSetups(config, self.ends, self.out, self.pairing, self)
        self.transfers = Transfers(config, self.out, self.pairing, clock, self.data.forget)
        self._client_lines = LineSplitter(config.max_line)
        self._server_lines = LineSplitter(config.max_line)
        self._assembler = ReplyAssembler(config.max_reply_bytes)
        self._queued: deque[bytes] = deque()
        self._counts = _Counters()
        self._last_command_at = self.started
        self._idle_mark = -1

    # ---- entry point ----------------------------------------------------------------
    def start(self) -> list[Output]:
        """The first outputs: the ``session.open`` fact."""
        ends = self.ends
        self.out.fact(
            "session.open",
            client=addr.show(ends.client),
            upstream="chosen at login" if self.gateway else addr.show(ends.upstream_target),
            upstream_mode=self.config.upstream_mode,
        )
        if self.gateway is not None:
            self.gateway.greet()
        return self.out.flush()

    def handle(self, event: Input) -> list[Output]:
        if self.closed:
            return []
        handler = self._handlers[type(event)]
        handler(self, event)
        return self.out.flush()

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # ---- what the components ask of the spine ------------------------------------------
    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.transfers.close_all()
        duration = self.clock() - self.started
        c = self._counts
        self.out.fact(
            "session.close",
            reason=reason,
            duration_ms=round(duration * 1000, 1),
            commands=c.commands,
            replies=c.replies,
            replies_by_class=dict(sorted(c.by_class.items())),
            transfers=self.transfers.count,
            bytes=self.transfers.bytes,
        )
        self.out.release_at_close()
        self.phase = Phase.CLOSED
        self.out.emit(CloseControl(reason))

    def drain_client_lines(self) -> None:
        while self._queued and self.gate() is None:
            self._on_command(self._queued.popleft())

    def gate(self) -> Gate | None:
        """What holds the client's next queued line, or None when it may go."""
        if self.data.listening:
            return Gate.LISTENING
        if self.ftps.gate:
            return Gate.UPSTREAM_TLS
        if self.gateway is not None and self.gateway.holding:
            return Gate.ROUTING
        if self.closed:
            return Gate.CLOSED
        if self._queued and self.data.awaiting_dial(self._queued[0]):
            return Gate.DIALLING
        return None

    def prot_p_of(self, side: Side) -> bool:
        return self.ftps.prot_p_of(side)

    # ---- upstream ------------------------------------------------------------------------
    def _on_upstream_connected(self, ev: UpstreamConnected) -> None:
        self.ends.upstream_local, self.ends.upstream_peer = ev.local, ev.peer
        self.out.fact(
            "upstream.connect",
            local=addr.show(ev.local),
            peer=addr.show(ev.peer),
        )
        self.out.upstream_up()
        self.phase = Phase.GREETING
        if self.config.greeting_timeout > 0:
            self.out.emit(StartTimer(GREETING_TIMER, self.config.greeting_timeout))
        if self.config.idle_timeout > 0:
            self.out.emit(StartTimer(IDLE_TIMER, self.config.idle_timeout))
        if self.gateway is not None:
            line = self.gateway.connected()
            self.pairing.send(parse_command(line), line)

    def _on_upstream_failed(self, ev: UpstreamFailed) -> None:
        if self.gateway is not None and self.gateway.failed(ev):
            self.drain_client_lines()
            return
        target = addr.show(self.ends.upstream_target)
        self.out.fact("upstream.failed", kind=ev.kind, detail=ev.detail, upstream=target)
        self.out.proxy_reply(421, f"ftpdiag: cannot reach the server {target}: {ev.detail}.")
        self.close(f"upstream {ev.kind}")

    def _on_control_closed(self, ev: ControlClosed) -> None:
        last = self.pairing.head
        self.out.fact(
            "control.closed",
            side=ev.side,
            clean=ev.clean,
            detail=ev.detail,
            awaiting=(last.command.verb if last and last.command else None),
            transfer_open=self.transfers.any_open(),
            client_head=self._client_lines.head() or None,
        )
        if self._assembler.in_progress:
            # RFC 959 §4.2: a multi-line reply ends on a line with its own code; this one never did.
            self.out.fact("protocol.reply_unterminated", **self._assembler.progress())
        if ev.side == "server" and self.pairing:
            self.out.proxy_reply(421, "ftpdiag: the server closed the control connection.")
        kind = "closed" if ev.clean else "reset"
        self.close(f"{ev.side} {kind}")

    def _on_blind_traffic(self, ev: BlindTraffic) -> None:
        self.out.fact("tls.blind_traffic", to_client=ev.to_client, to_server=ev.to_server)

    def _on_shutdown(self, ev: Shutdown) -> None:
        self.out.proxy_reply(421, "ftpdiag: the proxy is shutting down.")
        self.close(ev.reason)

    # ---- timers --------------------------------------------------------------------------
    def _on_timer(self, ev: TimerFired) -> None:
        kind = ev.timer.kind
        if kind is TimerKind.GREETING and self.phase is Phase.GREETING:
            seconds = self.config.greeting_timeout
            self.out.fact("greeting.timeout", seconds=seconds)
            self.out.proxy_reply(421, f"ftpdiag: the server sent no greeting within {seconds:g} s.")
            self.close("no greeting")
        elif kind is TimerKind.COMPLETION and ev.timer.pipe is not None:
            self.transfers.on_completion_timer(ev.timer.pipe)
        elif kind is TimerKind.IDLE:
            self._on_idle_timer()

    def _on_idle_timer(self) -> None:
        seconds = self.config.idle_timeout
        running = self.transfers.running()
        moved = sum(t.to_client + t.to_server for t in running)
        if running and moved != self._idle_mark:
            # Data is moving (the glue tallied it just now): the control connection is
            # quiet during a transfer, not idle.
            self._idle_mark = moved
            self.out.emit(StartTimer(IDLE_TIMER, seconds))
            return
        head = self.pairing.head
        waiting = head.command if head else None
        if waiting is not None and not running:
            self.out.fact("control.server_silent", awaiting=waiting.verb, seconds=seconds)
            text = f"ftpdiag: the server did not answer {waiting.verb} in {seconds:g} s."
            self.out.proxy_reply(421, text)
            self.close("server silent")
            return
        self.out.fact(
            "control.idle_timeout",
            seconds=seconds,
            awaiting=waiting.verb if waiting is not None else None,
            transfer_stalled=bool(running),
        )
        self.out.proxy_reply(421, f"ftpdiag: no activity for {seconds:g} s; closing.")
        self.close("idle timeout")

    # ---- client side ---------------------------------------------------------------------
    def _on_client_bytes(self, ev: FromClient) -> None:
        if self.config.idle_timeout > 0:
            self.out.emit(StartTimer(IDLE_TIMER, self.config.idle_timeout))
        for item in self._client_lines.feed(ev.data):
            if isinstance(item, OverlongLine):
                self.out.fact(
                    "protocol.line_too_long",
                    side="client",
                    limit=item.limit,
                    head=_loggable_head(item.head),
                )
                self.out.proxy_reply(
                    500, f"Command line too long (over {item.limit} bytes); discarded."
                )
            else:
                self._queued.append(item)
        self.drain_client_lines()

    def _on_host_resolved(self, ev: HostResolved) -> None:
        if self.gateway is not None:
            self.gateway.resolved(ev)
            self.drain_client_lines()

    def _on_command(self, raw: bytes) -> None:
        command = parse_command(raw)
        self._counts.commands += 1
        self._last_command_at = self.clock()
        self.out.fact("command", verb=command.verb, arg=command.loggable_arg)
        verb = command.verb
        if self.gateway is not None and self.gateway.command(command):
            if verb == "QUIT":
                self.close("client quit before login")
            return
        if verb in PASSIVE_VERBS and command.arg.strip().upper() != "ALL":
            self.data.client_passive(command)
        elif verb in ACTIVE_VERBS:
            self.data.client_active(command)
        elif verb in UNSUPPORTED:
            self.out.fact("proxy.unsupported", verb=verb, instead=UNSUPPORTED[verb])
            self.out.proxy_reply(
                502, f"{verb} is not supported by ftpdiag; use {UNSUPPORTED[verb]}.", verb
            )
        elif verb == "AUTH":
            self.ftps.client_auth(command)
        elif verb in ("PBSZ", "PROT", "CCC") and self.ftps.client_protection(command):
            return
        elif verb in TRANSFER_VERBS:
            self._transfer_command(command)
        else:
            self._track_settings(command)
            if verb == "ABOR":
                self.transfers.client_abort()
            self.pairing.send(command, raw)

    def _track_settings(self, command: Command) -> None:
        if command.verb == "TYPE" and command.arg:
            self.type = command.arg.strip()[:1].upper()
        elif command.verb == "REST":
            self.rest = int(command.arg) if command.arg.strip().isdigit() else 0

    def _transfer_command(self, command: Command) -> None:
        setup = self.data.take()
        if setup is None:
            self.pairing.send(command, command.raw)
            return
        if setup.failed is not None:
            # The pipe is gone: forwarded, the command would make the server wait for a data
            # connection that never comes (pyftpdlib: 30 s, then 421), so answer it here.
            text = f"ftpdiag: cannot open the data connection: {setup.failed}."
            self.out.proxy_reply(425, text, command.verb)
            return
        self.transfers.start(command, setup, self.type, self.rest, self.ftps.client_prot_p)
        self.rest = 0

    # ---- data connections (the glue's reports, to the components that need them) ------------
    def _on_data_listening(self, ev: DataListening) -> None:
        self.data.on_listening(ev)

    def _on_data_connected(self, ev: DataConnected) -> None:
        self.transfers.on_connected(ev)
        self.data.dial_settled(ev.pipe, ev.side)

    def _on_data_rejected(self, ev: DataRejected) -> None:
        self.data.on_rejected(ev)

    def _on_data_failed(self, ev: DataFailed) -> None:
        setup = self.data.on_failed(ev)
        self.transfers.on_failed(ev, setup)
        if self.data.listener_failed(ev, setup):
            # The proxy could not even open its listener: answer the client now.
            self.out.proxy_reply(425, f"ftpdiag: cannot open a data listener: {ev.detail}.")
            self.drain_client_lines()
        self.data.dial_settled(ev.pipe, ev.side)

    def _on_data_tally(self, ev: DataTally) -> None:
        self.transfers.on_tally(ev)

    def _on_data_progress(self, ev: DataProgress) -> None:
        self.transfers.on_progress(ev)

    def _on_data_closed(self, ev: DataClosed) -> None:
        self.data.on_closed(ev.pipe)
        self.transfers.on_closed(ev)

    # ---- server side ---------------------------------------------------------------------
    def _on_server_bytes(self, ev: FromServer) -> None:
        if self.config.idle_timeout > 0:
            self.out.emit(StartTimer(IDLE_TIMER, self.config.idle_timeout))
        for item in self._server_lines.feed(ev.data):
            if self.closed:
                return
            if isinstance(item, OverlongLine):
                self.out.fact(
                    "protocol.line_too_long",
                    side="server",
                    limit=item.limit,
                    head=line_text(item.head)[:40],
                )
                self.out.proxy_reply(
                    421, f"ftpdiag: the server sent a line over {item.limit} bytes; closing."
                )
                self.close("server line too long")
                return
            result = self._assembler.feed(item)
            if result is None:
                continue
            if isinstance(result, MalformedReply):
                head = self.pairing.head
                at_greeting = head is not None and head.purpose is Purpose.GREETING
                self.out.fact(
                    "protocol.malformed_reply", text=result.text[:200], greeting=at_greeting
                )
                self.out.to_client(result.raw)
            elif isinstance(result, OversizedReply):
                self.out.fact("protocol.reply_too_long", code=result.code, limit=result.limit)
                self.out.proxy_reply(
                    421, "ftpdiag: the server's multi-line reply never ended; closing."
                )
                self.close("server reply too long")
            else:
                self._on_reply(result)

    def _state_tags(self, pending: Pending | None) -> list[str]:
        tags: list[str] = []
        if pending is not None and pending.purpose is Purpose.GREETING:
            tags.append("greeting")
        tags.append("logged_in" if self.logged_in else "before_login")
        tags += self.ftps.tags()
        transfer = self.transfers.get(pending.pipe if pending else None)
        mode = transfer.client_mode if transfer else self.transfers.last_mode
        if mode is not None:
            tags.append(mode)
        if self.transfers.any_open():
            tags.append("transfer")
        verb = pending.command.verb if pending and pending.command else None
        if (transfer is not None and transfer.aborted_by == "client") or verb == "ABOR":
            tags.append("abort")
        return tags

    def _on_reply(self, reply: Reply) -> None:
        now = self.clock()
        pending = self.pairing.answer(reply)
        self._counts.replies += 1
        klass = f"{reply.code // 100}xx"
        self._counts.by_class[klass] = self._counts.by_class.get(klass, 0) + 1
        latency = round((now - pending.sent_at) * 1000, 2) if pending is not None else None
        command = pending.command if pending else None
        self.out.fact(
            "reply",
            code=reply.code,
            text=reply.text,
            command=command.verb if command else None,
            arg=command.loggable_arg if command else None,
            upstream_command=pending.upstream_verb if pending else None,
            pipe=pending.pipe if pending else None,
            latency_ms=latency,
            state=self._state_tags(pending),
            unsolicited=pending is None,
            mismatched_codes=list(reply.mismatched_codes),
            idle_ms=round((now - self._last_command_at) * 1000, 1),
        )
        if pending is None:
            self.out.to_client(reply.raw)
            return
        if pending.purpose is Purpose.GREETING:
            if not reply.preliminary:
                self.phase = Phase.OPEN
            self.out.emit(CancelTimer(GREETING_TIMER))
            if self.gateway is None or self.gateway.relays_greeting(reply.code):
                self.out.to_client(reply.raw)
            if reply.code == 220:
                self.ftps.begin_upstream_tls()
            return
        if pending.purpose is Purpose.INTERNAL:
            if not reply.preliminary and command is not None:
                self.ftps.on_internal_reply(command, reply)
            return
        if reply.preliminary:
            self.out.to_client(reply.raw)
            return
        if command is not None:
            self._after_final_reply(command, reply)
        self._on_final[pending.purpose](self, pending, reply)

    def _after_final_reply(self, command: Command, reply: Reply) -> None:
        if reply.code in (230, 232):
            self.logged_in = True
        elif command.verb == "REIN" and reply.code == 220:
            self.logged_in = False
        elif command.verb == "PROT":
            self.ftps.after_protection_reply(command, reply)

    # ---- a final reply, by what its command was sent for ---------------------------------
    def _relay_final(self, pending: Pending, reply: Reply) -> None:
        self.out.to_client(reply.raw)

    def _server_passive_final(self, pending: Pending, reply: Reply) -> None:
        self.data.on_server_passive_reply(pending, reply)

    def _server_active_final(self, pending: Pending, reply: Reply) -> None:
        self.data.on_server_active_reply(pending, reply)

    def _transfer_final(self, pending: Pending, reply: Reply) -> None:
        self.transfers.on_final(pending, reply)

    def _auth_final(self, pending: Pending, reply: Reply) -> None:
        self.ftps.on_auth_reply(reply)

    _on_final: ClassVar[dict[Purpose, Callable[[Session, Pending, Reply], None]]] = {
        Purpose.RELAY: _relay_final,
        Purpose.SERVER_PASSIVE: _server_passive_final,
        Purpose.SERVER_ACTIVE: _server_active_final,
        Purpose.TRANSFER: _transfer_final,
        Purpose.AUTH: _auth_final,
    }
    """What a final reply does, by why its command went upstream. ``GREETING`` and
    ``INTERNAL`` replies are handled before (their preliminary replies are not relayed)."""

    def _on_tls_established(self, ev: TLSEstablished) -> None:
        self.ftps.on_tls_established(ev)

    def _on_tls_failed(self, ev: TLSFailed) -> None:
        self.ftps.on_tls_failed(ev)

    _handlers: ClassVar[dict[type, Callable[[Session, Any], None]]] = {
        UpstreamConnected: _on_upstream_connected,
        UpstreamFailed: _on_upstream_failed,
        HostResolved: _on_host_resolved,
        FromClient: _on_client_bytes,
        FromServer: _on_server_bytes,
        ControlClosed: _on_control_closed,
        DataListening: _on_data_listening,
        DataConnected: _on_data_connected,
        DataRejected: _on_data_rejected,
        DataFailed: _on_data_failed,
        DataProgress: _on_data_progress,
        DataTally: _on_data_tally,
        DataClosed: _on_data_closed,
        TimerFired: _on_timer,
        Shutdown: _on_shutdown,
        TLSEstablished: _on_tls_established,
        TLSFailed: _on_tls_failed,
        BlindTraffic: _on_blind_traffic,
    }
