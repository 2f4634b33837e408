"""The control-session state machine: one client, one upstream server, any number of transfers.

``Session.handle(event)`` takes one input from ``events`` and returns the outputs the glue must
carry out, in order. The session pairs every reply with the command it answers (a FIFO of
pending commands: preliminary 1xx replies leave it in place, final ones pop it), rewrites the
data-connection addresses so that every data connection passes through the proxy, translates
between passive and active mode when the two sides differ, and holds a transfer's final reply
until the relayed data has been delivered (the client must never see ``226`` before the last
byte).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ftpdiag.core import addresses as addr
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
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
    DialData,
    Fact,
    FinishData,
    FromClient,
    FromServer,
    Input,
    ListenData,
    Output,
    Shutdown,
    Side,
    StartTimer,
    TimerFired,
    TLSEstablished,
    TLSFailed,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
)
from ftpdiag.core.framing import LineSplitter, OverlongLine, line_text
from ftpdiag.core.ftps import FTPSMixin
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
from ftpdiag.core.transfers import TRANSFER_VERBS, DataSetup, Mode, Transfer

Purpose = Literal[
    "relay", "greeting", "server-passive", "server-active", "transfer", "auth", "internal"
]

PASSIVE_VERBS = frozenset({"PASV", "EPSV"})
ACTIVE_VERBS = frozenset({"PORT", "EPRT"})
UNSUPPORTED = {"LPRT": "EPRT", "LPSV": "EPSV"}


@dataclass(slots=True)
class Pending:
    """A command sent upstream and not yet answered by a final reply."""

    command: Command | None
    sent_at: float
    purpose: Purpose = "relay"
    pipe: int | None = None


@dataclass(slots=True)
class _Counters:
    commands: int = 0
    replies: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    transfers: int = 0
    bytes: int = 0


def _loggable_head(raw: bytes) -> str:
    """The start of an over-long client line for the log: a PASS/ACCT line shows no secret."""
    command = parse_command(raw)
    if command.verb in SECRET_VERBS:
        return f"{command.verb} {REDACTED}"
    return line_text(raw)[:40]


def _crlf(text: str) -> bytes:
    return text.encode("utf-8", errors="replace") + b"\r\n"


class Session(FTPSMixin):
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
        self.client = client
        self.client_local = client_local
        self.upstream_target = upstream
        self.upstream_local: Address | None = None
        self.upstream_peer: Address | None = None
        self.clock = clock
        self.started = clock()
        self.closed = False
        self.logged_in = False
        self.type = "A"
        self.rest = 0
        self._out: list[Output] = []
        self._client_lines = LineSplitter(config.max_line)
        self._server_lines = LineSplitter(config.max_line)
        self._assembler = ReplyAssembler(config.max_reply_bytes)
        self._pending: deque[Pending] = deque([Pending(None, self.started, "greeting")])
        self._queued: deque[bytes] = deque()
        self._to_server_early: list[bytes] = []
        self._waiting_listeners: set[tuple[int, Side]] = set()
        self._after_listeners: Callable[[], None] | None = None
        self._next_pipe = 1
        self._setup: DataSetup | None = None
        self._setups: dict[int, DataSetup] = {}
        self._transfers: dict[int, Transfer] = {}
        self._hold_pipe: int | None = None
        self._held: list[bytes] = []
        self._last_mode: Mode | None = None
        self._pipe_connected: dict[int, int] = {}
        self._counts = _Counters()
        self._last_command_at = self.started
        self._idle_mark = -1
        self._init_tls()

    # ---- entry point ----------------------------------------------------------------
    def start(self) -> list[Output]:
        """The first outputs: the ``session.open`` fact."""
        self._fact(
            "session.open",
            client=f"{self.client[0]}:{self.client[1]}",
            upstream=f"{self.upstream_target[0]}:{self.upstream_target[1]}",
            upstream_mode=self.config.upstream_mode,
        )
        return self._flush()

    def handle(self, event: Input) -> list[Output]:
        if self.closed:
            return []
        handler = self._handlers[type(event)]
        handler(self, event)
        return self._flush()

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # ---- small emitters --------------------------------------------------------------
    def _fact(self, event: str, **fields: Any) -> None:
        self._out.append(Fact(event, fields))

    def _to_client(self, data: bytes) -> None:
        if self._hold_pipe is not None:
            self._held.append(data)
        else:
            self._out.append(ToClient(data))

    def _proxy_reply(self, code: int, text: str, command: Command | None = None) -> None:
        """A reply the proxy itself gives the client; logged so a person sees what it got."""
        self._fact("proxy.reply", code=code, text=text, command=command.verb if command else None)
        self._to_client(_crlf(f"{code} {text}"))

    def _to_server(self, data: bytes) -> None:
        if self.upstream_peer is None:
            self._to_server_early.append(data)
        else:
            self._out.append(ToServer(data))

    def _send_command(
        self, command: Command, raw: bytes, purpose: Purpose = "relay", pipe: int | None = None
    ) -> None:
        self._pending.append(Pending(command, self.clock(), purpose, pipe))
        self._to_server(raw)

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        for transfer in list(self._transfers.values()):
            if not transfer.ended:
                final = transfer.final_code  # the reply came; only the pipe's report did not
                self._end_transfer(transfer, final if final is not None else "closed")
        duration = self.clock() - self.started
        c = self._counts
        self._fact(
            "session.close",
            reason=reason,
            duration_ms=round(duration * 1000, 1),
            commands=c.commands,
            replies=c.replies,
            replies_by_class=dict(sorted(c.by_class.items())),
            transfers=c.transfers,
            bytes=c.bytes,
        )
        if self._held:
            self._out.extend(ToClient(d) for d in self._held)
            self._held.clear()
        self.closed = True
        self._out.append(CloseControl(reason))

    # ---- upstream ------------------------------------------------------------------------
    def _on_upstream_connected(self, ev: UpstreamConnected) -> None:
        self.upstream_local, self.upstream_peer = ev.local, ev.peer
        self._fact(
            "upstream.connect",
            local=f"{ev.local[0]}:{ev.local[1]}",
            peer=f"{ev.peer[0]}:{ev.peer[1]}",
        )
        self._out.extend(ToServer(d) for d in self._to_server_early)
        self._to_server_early.clear()
        if self.config.greeting_timeout > 0:
            self._out.append(StartTimer("greeting", self.config.greeting_timeout))
        if self.config.idle_timeout > 0:
            self._out.append(StartTimer("idle", self.config.idle_timeout))

    def _on_upstream_failed(self, ev: UpstreamFailed) -> None:
        target = f"{self.upstream_target[0]}:{self.upstream_target[1]}"
        self._fact("upstream.failed", kind=ev.kind, detail=ev.detail, upstream=target)
        self._proxy_reply(421, f"ftpdiag: cannot reach the server {target}: {ev.detail}.")
        self._close(f"upstream {ev.kind}")

    def _on_control_closed(self, ev: ControlClosed) -> None:
        last = self._pending[0] if self._pending else None
        self._fact(
            "control.closed",
            side=ev.side,
            clean=ev.clean,
            detail=ev.detail,
            awaiting=(last.command.verb if last and last.command else None),
            transfer_open=any(t.open for t in self._transfers.values()),
            client_head=self._client_lines.head() or None,
        )
        if self._assembler.in_progress:
            # RFC 959 §4.2: a multi-line reply ends on a line with its own code; this one never did.
            self._fact("protocol.reply_unterminated", **self._assembler.progress())
        if ev.side == "server" and self._pending:
            self._proxy_reply(421, "ftpdiag: the server closed the control connection.")
        kind = "closed" if ev.clean else "reset"
        self._close(f"{ev.side} {kind}")

    def _on_blind_traffic(self, ev: BlindTraffic) -> None:
        self._fact("tls.blind_traffic", to_client=ev.to_client, to_server=ev.to_server)

    def _on_shutdown(self, ev: Shutdown) -> None:
        self._proxy_reply(421, "ftpdiag: the proxy is shutting down.")
        self._close(ev.reason)

    def _on_timer(self, ev: TimerFired) -> None:
        if ev.name == "greeting" and self._pending and self._pending[0].purpose == "greeting":
            seconds = self.config.greeting_timeout
            self._fact("greeting.timeout", seconds=seconds)
            self._proxy_reply(421, f"ftpdiag: the server sent no greeting within {seconds:g} s.")
            self._close("no greeting")
        elif ev.name.startswith("completion:"):
            pipe = int(ev.name.partition(":")[2])
            transfer = self._transfers.get(pipe)
            if transfer and transfer.final_code is None:
                self._fact(
                    "transfer.no_completion",
                    pipe=pipe,
                    command=transfer.verb,
                    path=transfer.path,
                    bytes=transfer.bytes,
                    waited_s=self.config.completion_timeout,
                )
        elif ev.name == "idle":
            seconds = self.config.idle_timeout
            running = [t for t in self._transfers.values() if t.open]
            moved = sum(t.to_client + t.to_server for t in running)
            if running and moved != self._idle_mark:
                # Data is moving (the glue tallied it just now): the control connection is
                # quiet during a transfer, not idle.
                self._idle_mark = moved
                self._out.append(StartTimer("idle", seconds))
                return
            waiting = self._pending[0].command if self._pending else None
            if waiting is not None and not running:
                self._fact("control.server_silent", awaiting=waiting.verb, seconds=seconds)
                text = f"ftpdiag: the server did not answer {waiting.verb} in {seconds:g} s."
                self._proxy_reply(421, text)
                self._close("server silent")
                return
            self._fact(
                "control.idle_timeout",
                seconds=seconds,
                awaiting=waiting.verb if waiting is not None else None,
                transfer_stalled=bool(running),
            )
            self._proxy_reply(421, f"ftpdiag: no activity for {seconds:g} s; closing.")
            self._close("idle timeout")

    # ---- client side ---------------------------------------------------------------------
    def _on_client_bytes(self, ev: FromClient) -> None:
        if self.config.idle_timeout > 0:
            self._out.append(StartTimer("idle", self.config.idle_timeout))
        for item in self._client_lines.feed(ev.data):
            if isinstance(item, OverlongLine):
                self._fact(
                    "protocol.line_too_long",
                    side="client",
                    limit=item.limit,
                    head=_loggable_head(item.head),
                )
                self._proxy_reply(
                    500, f"Command line too long (over {item.limit} bytes); discarded."
                )
            else:
                self._queued.append(item)
        self._drain_client_lines()

    def _drain_client_lines(self) -> None:
        while self._queued and not (
            self._waiting_listeners or self._tls_gate or self.closed or self._awaiting_dial()
        ):
            self._on_command(self._queued.popleft())

    def _awaiting_dial(self) -> bool:
        """A transfer command waits until the proxy's connection to the server's passive port
        is up or has failed. Forwarded earlier, it would race the dial: a refused dial would
        leave the server waiting for a data connection that never comes (and its later
        replies paired with the wrong command); held, a failed dial is answered with 425."""
        setup = self._setup
        return (
            setup is not None
            and setup.dialling_server
            and parse_command(self._queued[0]).verb in TRANSFER_VERBS
        )

    def _dial_settled(self, pipe: int, side: Side) -> None:
        setup = self._setups.get(pipe)
        if side == "server" and setup is not None and setup.dialling_server:
            setup.dialling_server = False
            self._drain_client_lines()

    def _on_command(self, raw: bytes) -> None:
        command = parse_command(raw)
        self._counts.commands += 1
        self._last_command_at = self.clock()
        self._fact("command", verb=command.verb, arg=command.loggable_arg)
        verb = command.verb
        if verb in PASSIVE_VERBS and command.arg.strip().upper() != "ALL":
            self._client_passive(command)
        elif verb in ACTIVE_VERBS:
            self._client_active(command)
        elif verb in UNSUPPORTED:
            self._fact("proxy.unsupported", verb=verb, instead=UNSUPPORTED[verb])
            self._proxy_reply(
                502, f"{verb} is not supported by ftpdiag; use {UNSUPPORTED[verb]}.", command
            )
        elif verb == "AUTH":
            self._client_auth(command)
        elif verb in ("PBSZ", "PROT", "CCC") and self._client_protection(command):
            return
        elif verb in TRANSFER_VERBS:
            self._transfer_command(command)
        else:
            self._track_settings(command)
            if verb == "ABOR":
                self._client_abort()
            self._send_command(command, raw)

    def _client_abort(self) -> None:
        """ABOR: mark the unfinished transfers and stop holding a final reply behind their data.

        A client that sent ABOR waits for replies, not for the data it abandons; holding the
        final reply until that data is read would deadlock both until the drain timeout.
        """
        for transfer in self._transfers.values():
            if not transfer.ended and (transfer.final_code is None or not transfer.closed):
                transfer.aborted_by = "client"
        if self._hold_pipe is not None:
            self._release_held()

    def _track_settings(self, command: Command) -> None:
        if command.verb == "TYPE" and command.arg:
            self.type = command.arg.strip()[:1].upper()
        elif command.verb == "REST":
            self.rest = int(command.arg) if command.arg.strip().isdigit() else 0

    # ---- data connection set-up ------------------------------------------------------------
    def _new_setup(self, command: Command, client_mode: Mode) -> DataSetup:
        if self._setup is not None:
            self._out.append(FinishData(self._setup.pipe, abort=True))
        server_mode: Mode
        if self.config.upstream_mode == "same":
            server_mode = client_mode
        elif self.config.upstream_mode == "active":
            server_mode = "active"
        else:
            server_mode = "passive"
        setup = DataSetup(self._next_pipe, command.verb, client_mode, server_mode)
        self._next_pipe += 1
        self._setup = setup
        self._setups[setup.pipe] = setup
        return setup

    def _listen(self, setup: DataSetup, side: Side) -> None:
        if side == "client":
            host, allow = self.client_local[0], self.client[0]
        else:
            assert self.upstream_local is not None and self.upstream_peer is not None
            host, allow = self.upstream_local[0], self.upstream_peer[0]
        self._waiting_listeners.add((setup.pipe, side))
        self._out.append(ListenData(setup.pipe, side, host, allow, self._prot_p_of(side)))

    def _when_listening(self, then: Callable[[], None]) -> None:
        if self._waiting_listeners:
            self._after_listeners = then
        else:
            then()

    def _client_passive(self, command: Command) -> None:
        setup = self._new_setup(command, "passive")
        self._listen(setup, "client")
        if setup.server_mode == "active":
            self._listen(setup, "server")
        self._when_listening(lambda: self._ask_server(command, setup))

    def _client_active(self, command: Command) -> None:
        try:
            if command.verb == "PORT":
                target = addr.parse_port_arg(command.arg)
            else:
                target = addr.parse_eprt_arg(command.arg)
        except addr.AddressError as exc:
            self._fact(
                "protocol.bad_address",
                side="client",
                verb=command.verb,
                arg=command.arg,
                error=str(exc),
            )
            self._proxy_reply(501, f"Syntax error in {command.verb} argument: {exc}.", command)
            return
        if not addr.same_host(target[0], self.client[0]):
            self._fact(
                "security.bounce_refused",
                verb=command.verb,
                requested=f"{target[0]}:{target[1]}",
                client=self.client[0],
            )
            self._proxy_reply(
                500,
                f"Illegal {command.verb} command: data address must be the client's own.",
                command,
            )
            return
        setup = self._new_setup(command, "active")
        setup.client_target = target
        if setup.server_mode == "active":
            self._listen(setup, "server")
        self._when_listening(lambda: self._ask_server(command, setup))

    def _ask_server(self, command: Command, setup: DataSetup) -> None:
        """Send the server the data command its mode needs: PASV/EPSV or PORT/EPRT."""
        assert self.upstream_peer is not None
        v6 = addr.is_ipv6(self.upstream_peer[0])
        if setup.server_mode == "passive":
            verb = "EPSV" if v6 or command.verb in ("EPSV", "EPRT") else "PASV"
            raw = command.raw if verb == command.verb else _crlf(verb)
            self._send_command(command, raw, "server-passive", setup.pipe)
        else:
            assert setup.server_listen is not None
            host, port = setup.server_listen
            if v6 or command.verb in ("EPSV", "EPRT"):
                line = f"EPRT {addr.format_eprt(host, port)}"
            else:
                line = f"PORT {addr.format_host_port(host, port)}"
            self._send_command(command, _crlf(line), "server-active", setup.pipe)

    def _on_data_listening(self, ev: DataListening) -> None:
        setup = self._setups.get(ev.pipe)
        if setup is not None:
            if ev.side == "client":
                setup.client_listen = ev.address
            else:
                setup.server_listen = ev.address
        self._fact(
            "data.listen", pipe=ev.pipe, side=ev.side, address=f"{ev.address[0]}:{ev.address[1]}"
        )
        self._waiting_listeners.discard((ev.pipe, ev.side))
        self._listeners_settled()

    def _listeners_settled(self) -> None:
        if not self._waiting_listeners and self._after_listeners is not None:
            then, self._after_listeners = self._after_listeners, None
            then()
        self._drain_client_lines()

    def _client_facing_data_reply(self, setup: DataSetup, server_reply: Reply | None) -> bytes:
        """The reply the client gets for its PASV/EPSV/PORT/EPRT once the server side is set."""
        if setup.client_mode == "active":
            if server_reply is not None and server_reply.code == 200:
                return server_reply.raw
            return _crlf(f"200 {setup.client_verb} command successful (ftpdiag relays it).")
        assert setup.client_listen is not None
        host, port = setup.client_listen
        if setup.client_verb == "EPSV":
            if server_reply is not None and server_reply.code == 229:
                return _crlf(f"229 {addr.rewrite_epsv_text(server_reply.text, port)}")
            return _crlf(f"229 Entering Extended Passive Mode {addr.format_epsv(port)}")
        if server_reply is not None and server_reply.code == 227:
            return _crlf(f"227 {addr.rewrite_pasv_text(server_reply.text, host, port)}")
        return _crlf(f"227 Entering Passive Mode ({addr.format_host_port(host, port)}).")

    def _superseded(self, pending: Pending, reply: Reply) -> DataSetup | None:
        """The set-up this reply is for, or None when a newer PASV/PORT replaced it (the
        client pipelined them): that command gets the server's reply unchanged."""
        setup = self._setups.get(pending.pipe or 0)
        if setup is None:
            self._fact("data.superseded", pipe=pending.pipe, code=reply.code)
            self._to_client(reply.raw)
        return setup

    def _on_server_passive_reply(self, pending: Pending, reply: Reply) -> None:
        setup = self._superseded(pending, reply)
        if setup is None:
            return
        assert self.upstream_peer is not None and pending.command is not None
        if reply.code not in (227, 229):
            self._fact("data.setup_failed", pipe=setup.pipe, server_mode="passive", code=reply.code)
            if self.config.upstream_mode == "auto" and reply.code >= 500:
                self._fact("data.fallback", pipe=setup.pipe, to="active", code=reply.code)
                setup.server_mode = "active"
                command = pending.command
                self._listen(setup, "server")
                self._when_listening(lambda: self._ask_server(command, setup))
                return
            self._drop_setup(setup)
            self._to_client(reply.raw)
            return
        try:
            if reply.code == 227:
                advertised = addr.parse_pasv_reply(reply.text)
            else:
                advertised = (self.upstream_peer[0], addr.parse_epsv_reply(reply.text))
        except addr.AddressError as exc:
            self._fact(
                "protocol.bad_address",
                side="server",
                code=reply.code,
                text=reply.text,
                error=str(exc),
            )
            self._drop_setup(setup)
            self._to_client(reply.raw)
            return
        dial = (
            advertised if self.config.use_pasv_address else (self.upstream_peer[0], advertised[1])
        )
        self._fact(
            "data.passive",
            pipe=setup.pipe,
            code=reply.code,
            advertised=f"{advertised[0]}:{advertised[1]}",
            dialled=f"{dial[0]}:{dial[1]}",
            control_peer=self.upstream_peer[0],
        )
        setup.dialling_server = True
        self._out.append(DialData(setup.pipe, "server", dial, self.server_prot_p))
        self._to_client(self._client_facing_data_reply(setup, reply))

    def _on_server_active_reply(self, pending: Pending, reply: Reply) -> None:
        setup = self._superseded(pending, reply)
        if setup is None:
            return
        if reply.code // 100 != 2:
            self._fact("data.setup_failed", pipe=setup.pipe, server_mode="active", code=reply.code)
            self._drop_setup(setup)
            self._to_client(reply.raw)
            return
        self._to_client(self._client_facing_data_reply(setup, reply))

    def _drop_setup(self, setup: DataSetup) -> None:
        if self._setup is setup:
            self._setup = None
        self._out.append(FinishData(setup.pipe, abort=True))

    # ---- transfers -------------------------------------------------------------------------
    def _transfer_command(self, command: Command) -> None:
        setup, self._setup = self._setup, None
        if setup is None:
            self._send_command(command, command.raw)
            return
        if setup.failed is not None:
            # The pipe is gone: forwarded, the command would make the server wait for a data
            # connection that never comes (pyftpdlib: 30 s, then 421), so answer it here.
            text = f"ftpdiag: cannot open the data connection: {setup.failed}."
            self._proxy_reply(425, text, command)
            return
        transfer = Transfer(
            pipe=setup.pipe,
            verb=command.verb,
            path=command.arg,
            client_mode=setup.client_mode,
            server_mode=setup.server_mode,
            type=self.type,
            rest=self.rest,
            started=self.clock(),
            connected=self._pipe_connected.get(setup.pipe, 0),
        )
        self.rest = 0
        self._last_mode = setup.client_mode
        self._transfers[setup.pipe] = transfer
        self._counts.transfers += 1
        self._fact("transfer.start", **transfer.start_fields())
        if setup.client_mode == "active":
            assert setup.client_target is not None
            self._out.append(
                DialData(setup.pipe, "client", setup.client_target, self.client_prot_p)
            )
        self._send_command(command, command.raw, "transfer", setup.pipe)

    def _on_transfer_final(self, pending: Pending, reply: Reply) -> None:
        transfer = self._transfers.get(pending.pipe or 0)
        if transfer is None:
            self._to_client(reply.raw)
            return
        transfer.final_code = reply.code
        self._out.append(CancelTimer(f"completion:{transfer.pipe}"))
        raw = self._cut_reply(transfer) if transfer.cut and reply.code < 300 else reply.raw
        if transfer.closed:
            self._to_client(raw)
            self._end_transfer(transfer, reply.code)
            return
        # 426 says the server closed the data connection: what it sent before is still in flight
        # (perhaps unread by the proxy under back-pressure) and must reach the client, so the
        # pipe drains. Other errors may leave the server's end open: abort. After the client's
        # ABOR the data is unwanted, and the client waits for this reply: abort, do not hold.
        client_abort = transfer.aborted_by == "client"
        abort = client_abort or (reply.code >= 400 and reply.code != 426)
        self._out.append(FinishData(transfer.pipe, abort=abort))
        if self._hold_pipe is None and not client_abort:
            self._hold_pipe = transfer.pipe
        self._to_client(raw)

    def _cut_reply(self, transfer: Transfer) -> bytes:
        """What the client gets instead of a server's success reply for a transfer whose data
        connection the proxy cut: the server had written everything into its socket, but the
        client did not receive it all, and a 2xx would pass a truncated file for a whole one."""
        text = f"ftpdiag: data connection stalled ({transfer.cut}) and closed; transfer aborted."
        self._fact("proxy.reply", code=426, text=text, command=transfer.verb)
        return _crlf(f"426 {text}")

    def _on_data_connected(self, ev: DataConnected) -> None:
        self._pipe_connected[ev.pipe] = self._pipe_connected.get(ev.pipe, 0) + 1
        transfer = self._transfers.get(ev.pipe)
        if transfer is not None:
            transfer.connected = self._pipe_connected[ev.pipe]
        self._fact("data.connect", pipe=ev.pipe, side=ev.side, peer=f"{ev.peer[0]}:{ev.peer[1]}")
        self._dial_settled(ev.pipe, ev.side)

    def _on_data_rejected(self, ev: DataRejected) -> None:
        expected = self.client[0] if ev.side == "client" else (self.upstream_peer or ("?", 0))[0]
        self._fact(
            "security.data_theft_refused",
            pipe=ev.pipe,
            side=ev.side,
            peer=f"{ev.peer[0]}:{ev.peer[1]}",
            expected=expected,
        )

    def _on_data_failed(self, ev: DataFailed) -> None:
        setup = self._setups.get(ev.pipe)
        if setup is not None and setup.failed is None:
            setup.failed = f"{ev.side} side {ev.kind}"
        self._fact(
            "data.failed",
            pipe=ev.pipe,
            side=ev.side,
            kind=ev.kind,
            detail=ev.detail,
            client_mode=setup.client_mode if setup else None,
            server_mode=setup.server_mode if setup else None,
        )
        transfer = self._transfers.get(ev.pipe)
        if ev.kind == "stall" and transfer is not None and not transfer.ended:
            transfer.cut = ev.detail
            final = transfer.final_code
            if final is not None and final < 300 and self._hold_pipe == ev.pipe and self._held:
                # The success reply came first and waits behind the data (it is the first
                # held line): the client must not get it now.
                self._held[0] = self._cut_reply(transfer)
        if (ev.pipe, ev.side) in self._waiting_listeners:
            # The proxy could not even open its listener: answer the client now.
            self._waiting_listeners.clear()
            self._after_listeners = None
            if setup is not None:
                self._drop_setup(setup)
            self._proxy_reply(425, f"ftpdiag: cannot open a data listener: {ev.detail}.")
            self._drain_client_lines()
        self._dial_settled(ev.pipe, ev.side)

    def _on_data_tally(self, ev: DataTally) -> None:
        transfer = self._transfers.get(ev.pipe)
        if transfer is not None and not transfer.closed:
            transfer.to_client, transfer.to_server = ev.to_client, ev.to_server

    def _on_data_progress(self, ev: DataProgress) -> None:
        transfer = self._transfers.get(ev.pipe)
        if transfer is None or transfer.ended:
            return
        transfer.to_client, transfer.to_server = ev.to_client, ev.to_server
        elapsed = self.clock() - transfer.started
        rate = transfer.bytes * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        self._fact(
            "transfer.progress",
            pipe=ev.pipe,
            command=transfer.verb,
            path=transfer.path,
            bytes=transfer.bytes,
            elapsed_ms=round(elapsed * 1000, 1),
            rate_mbps=round(rate, 2),
        )

    def _on_data_closed(self, ev: DataClosed) -> None:
        self._setups.pop(ev.pipe, None)
        if self._setup is not None and self._setup.pipe == ev.pipe and self._setup.failed is None:
            self._setup = None  # a failed set-up stays, so that its transfer command gets 425
        transfer = self._transfers.get(ev.pipe)
        if transfer is not None:
            transfer.closed = True
            transfer.to_client, transfer.to_server = ev.to_client, ev.to_server
            transfer.client_end, transfer.server_end = ev.client_end, ev.server_end
            transfer.first_closed = ev.first_closed
            transfer.duration = ev.duration
            self._fact(
                "data.close",
                pipe=ev.pipe,
                to_client=ev.to_client,
                to_server=ev.to_server,
                client_end=ev.client_end,
                server_end=ev.server_end,
                first_closed=ev.first_closed,
            )
            if transfer.final_code is not None:
                self._end_transfer(transfer, transfer.final_code)
            elif self.config.completion_timeout > 0:
                self._out.append(
                    StartTimer(f"completion:{ev.pipe}", self.config.completion_timeout)
                )
        if self._hold_pipe == ev.pipe:
            self._release_held()

    def _release_held(self) -> None:
        """Send the client the replies held back behind a transfer's data, in order."""
        self._hold_pipe = None
        held, self._held = self._held, []
        for data in held:
            self._to_client(data)

    def _end_transfer(self, transfer: Transfer, outcome: int | str) -> None:
        if transfer.ended:
            return
        transfer.ended = True
        if not transfer.closed:
            transfer.duration = self.clock() - transfer.started
        self._counts.bytes += transfer.bytes
        self._fact("transfer.end", **transfer.end_fields(outcome))
        self._forget_if_done(transfer)

    def _forget_if_done(self, transfer: Transfer) -> None:
        """An ended transfer whose pipe is down is dropped: a long session stays small."""
        if transfer.ended and transfer.closed:
            for per_pipe in (self._transfers, self._pipe_connected, self._setups):
                per_pipe.pop(transfer.pipe, None)

    # ---- server side ---------------------------------------------------------------------
    def _on_server_bytes(self, ev: FromServer) -> None:
        if self.config.idle_timeout > 0:
            self._out.append(StartTimer("idle", self.config.idle_timeout))
        for item in self._server_lines.feed(ev.data):
            if self.closed:
                return
            if isinstance(item, OverlongLine):
                self._fact(
                    "protocol.line_too_long",
                    side="server",
                    limit=item.limit,
                    head=line_text(item.head)[:40],
                )
                self._proxy_reply(
                    421, f"ftpdiag: the server sent a line over {item.limit} bytes; closing."
                )
                self._close("server line too long")
                return
            result = self._assembler.feed(item)
            if result is None:
                continue
            if isinstance(result, MalformedReply):
                at_greeting = bool(self._pending) and self._pending[0].purpose == "greeting"
                self._fact("protocol.malformed_reply", text=result.text[:200], greeting=at_greeting)
                self._to_client(result.raw)
            elif isinstance(result, OversizedReply):
                self._fact("protocol.reply_too_long", code=result.code, limit=result.limit)
                self._proxy_reply(
                    421, "ftpdiag: the server's multi-line reply never ended; closing."
                )
                self._close("server reply too long")
            else:
                self._on_reply(result)

    def _state_tags(self, pending: Pending | None, reply: Reply) -> list[str]:
        tags: list[str] = []
        if pending is not None and pending.purpose == "greeting":
            tags.append("greeting")
        tags.append("logged_in" if self.logged_in else "before_login")
        tags += self._tls_tags()
        pipe = pending.pipe if pending else None
        transfer = self._transfers.get(pipe or 0)
        mode = transfer.client_mode if transfer else self._last_mode
        if mode is not None:
            tags.append(mode)
        if any(t.open for t in self._transfers.values()):
            tags.append("transfer")
        verb = pending.command.verb if pending and pending.command else None
        if (transfer is not None and transfer.aborted_by == "client") or verb == "ABOR":
            tags.append("abort")
        return tags

    def _on_reply(self, reply: Reply) -> None:
        now = self.clock()
        pending = self._pending[0] if self._pending else None
        if pending is not None and not reply.preliminary:
            self._pending.popleft()
        self._counts.replies += 1
        klass = f"{reply.code // 100}xx"
        self._counts.by_class[klass] = self._counts.by_class.get(klass, 0) + 1
        latency = round((now - pending.sent_at) * 1000, 2) if pending is not None else None
        command = pending.command if pending else None
        self._fact(
            "reply",
            code=reply.code,
            text=reply.text,
            command=command.verb if command else None,
            arg=command.loggable_arg if command else None,
            latency_ms=latency,
            state=self._state_tags(pending, reply),
            unsolicited=pending is None,
            mismatched_codes=list(reply.mismatched_codes),
            idle_ms=round((now - self._last_command_at) * 1000, 1),
        )
        if pending is None:
            self._to_client(reply.raw)
            return
        if pending.purpose == "greeting":
            self._out.append(CancelTimer("greeting"))
            self._to_client(reply.raw)
            if reply.code == 220:
                self._begin_upstream_tls()
            return
        if pending.purpose == "internal":
            if not reply.preliminary and command is not None:
                self._on_internal_reply(command, reply)
            return
        if reply.preliminary:
            self._to_client(reply.raw)
            return
        if command is not None:
            self._after_final_reply(command, reply)
        if pending.purpose == "server-passive":
            self._on_server_passive_reply(pending, reply)
        elif pending.purpose == "server-active":
            self._on_server_active_reply(pending, reply)
        elif pending.purpose == "transfer":
            self._on_transfer_final(pending, reply)
        elif pending.purpose == "auth":
            self._on_auth_reply(reply)
        else:
            self._to_client(reply.raw)

    def _after_final_reply(self, command: Command, reply: Reply) -> None:
        if reply.code in (230, 232):
            self.logged_in = True
        elif command.verb == "REIN" and reply.code == 220:
            self.logged_in = False
        elif command.verb == "PROT":
            self._after_protection_reply(command, reply)

    _handlers: ClassVar[dict[type, Callable[[Session, Any], None]]] = {
        UpstreamConnected: _on_upstream_connected,
        UpstreamFailed: _on_upstream_failed,
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
        TLSEstablished: FTPSMixin._on_tls_established,
        TLSFailed: FTPSMixin._on_tls_failed,
        BlindTraffic: _on_blind_traffic,
    }
