"""Data-connection set-up: PASV/EPSV/PORT/EPRT, rewritten so every data connection passes
through the proxy, translated between passive and active when the two sides differ.

A client's PASV makes the proxy listen for the client; its PORT gives the proxy an address to
dial at the transfer command. Toward the server the proxy sends PASV/EPSV (and dials the port
the server names) or PORT/EPRT (naming a listener of its own), as ``--upstream-mode`` says.
Two gates hold the client's later lines (the session's ``drain_client_lines`` asks here):

- *listening*: the proxy's listeners are not bound yet, so it has no address to give;
- *dialling*: a transfer command waits until the proxy's connection to the server's passive
  port is up or has failed (see ``awaiting_dial``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ftpdiag.core import addresses as addr
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
    DataFailed,
    DataListening,
    DataRejected,
    DialData,
    FinishData,
    ListenData,
    Side,
)
from ftpdiag.core.messages import Command, Reply, parse_command
from ftpdiag.core.outbox import Outbox, crlf
from ftpdiag.core.pairing import Pairing, Pending, Purpose
from ftpdiag.core.transfers import TRANSFER_VERBS, DataSetup, Mode


class Spine(Protocol):
    """What the data set-up needs from the rest of the session."""

    def drain_client_lines(self) -> None:
        """Let the client's queued lines through, now that a gate may have opened."""

    def prot_p_of(self, side: Side) -> bool:
        """Whether that side's data connections are protected (PROT P)."""


@dataclass(frozen=True, slots=True)
class _Ask:
    """The data command to send the server once the proxy's listeners are bound."""

    command: Command
    setup: DataSetup


class DataSetups:
    """The data set-ups of one session: the current one, and every one whose pipe is up."""

    def __init__(
        self,
        config: SessionConfig,
        endpoints: addr.Endpoints,
        outbox: Outbox,
        pairing: Pairing,
        spine: Spine,
    ) -> None:
        self.config = config
        self._ends = endpoints
        self._outbox = outbox
        self._pairing = pairing
        self._spine = spine
        self._next_pipe = 1
        #: The newest set-up, which the next transfer command uses.
        self.current: DataSetup | None = None
        self.by_pipe: dict[int, DataSetup] = {}
        self._waiting_listeners: set[tuple[int, Side]] = set()
        self._ask_when_listening: _Ask | None = None

    # ---- the gates ----------------------------------------------------------------------
    @property
    def listening(self) -> bool:
        """Listeners are being bound: the client's next lines wait."""
        return bool(self._waiting_listeners)

    def awaiting_dial(self, next_line: bytes) -> bool:
        """A transfer command waits until the proxy's connection to the server's passive port
        is up or has failed. Forwarded earlier, it would race the dial: a refused dial would
        leave the server waiting for a data connection that never comes (and its later
        replies paired with the wrong command); held, a failed dial is answered with 425."""
        setup = self.current
        return (
            setup is not None
            and setup.dialling_server
            and parse_command(next_line).verb in TRANSFER_VERBS
        )

    def dial_settled(self, pipe: int, side: Side) -> None:
        setup = self.by_pipe.get(pipe)
        if side == "server" and setup is not None and setup.dialling_server:
            setup.dialling_server = False
            self._spine.drain_client_lines()

    # ---- the client's commands -------------------------------------------------------------
    def _new_setup(self, command: Command, client_mode: Mode) -> DataSetup:
        if self.current is not None:
            self._outbox.emit(FinishData(self.current.pipe, abort=True))
        server_mode: Mode
        if self.config.upstream_mode == "same":
            server_mode = client_mode
        elif self.config.upstream_mode == "active":
            server_mode = "active"
        else:
            server_mode = "passive"
        setup = DataSetup(self._next_pipe, command.verb, client_mode, server_mode)
        self._next_pipe += 1
        self.current = setup
        self.by_pipe[setup.pipe] = setup
        return setup

    def _listen(self, setup: DataSetup, side: Side) -> None:
        ends = self._ends
        if side == "client":
            host, allow = ends.client_local[0], ends.client[0]
        else:
            assert ends.upstream_local is not None and ends.upstream_peer is not None
            host, allow = ends.upstream_local[0], ends.upstream_peer[0]
        self._waiting_listeners.add((setup.pipe, side))
        self._outbox.emit(ListenData(setup.pipe, side, host, allow, self._spine.prot_p_of(side)))

    def _ask_server_when_listening(self, command: Command, setup: DataSetup) -> None:
        if self._waiting_listeners:
            self._ask_when_listening = _Ask(command, setup)
        else:
            self._ask_server(command, setup)

    def client_passive(self, command: Command) -> None:
        setup = self._new_setup(command, "passive")
        self._listen(setup, "client")
        if setup.server_mode == "active":
            self._listen(setup, "server")
        self._ask_server_when_listening(command, setup)

    def client_active(self, command: Command) -> None:
        out = self._outbox
        try:
            if command.verb == "PORT":
                target = addr.parse_port_arg(command.arg)
            else:
                target = addr.parse_eprt_arg(command.arg)
        except addr.AddressError as exc:
            out.fact(
                "protocol.bad_address",
                side="client",
                verb=command.verb,
                arg=command.arg,
                error=str(exc),
            )
            out.proxy_reply(501, f"Syntax error in {command.verb} argument: {exc}.", command.verb)
            return
        if not addr.same_host(target[0], self._ends.client[0]):
            out.fact(
                "security.bounce_refused",
                verb=command.verb,
                requested=addr.show(target),
                client=self._ends.client[0],
            )
            out.proxy_reply(
                500,
                f"Illegal {command.verb} command: data address must be the client's own.",
                command.verb,
            )
            return
        setup = self._new_setup(command, "active")
        setup.client_target = target
        if setup.server_mode == "active":
            self._listen(setup, "server")
        self._ask_server_when_listening(command, setup)

    def _ask_server(self, command: Command, setup: DataSetup) -> None:
        """Send the server the data command its mode needs: PASV/EPSV or PORT/EPRT."""
        peer = self._ends.upstream_peer
        assert peer is not None
        v6 = addr.is_ipv6(peer[0])
        if setup.server_mode == "passive":
            verb = "EPSV" if v6 or command.verb in ("EPSV", "EPRT") else "PASV"
            raw = command.raw if verb == command.verb else crlf(verb)
            self._pairing.send(command, raw, Purpose.SERVER_PASSIVE, setup.pipe)
        else:
            assert setup.server_listen is not None
            host, port = setup.server_listen
            if v6 or command.verb in ("EPSV", "EPRT"):
                line = f"EPRT {addr.format_eprt(host, port)}"
            else:
                line = f"PORT {addr.format_host_port(host, port)}"
            self._pairing.send(command, crlf(line), Purpose.SERVER_ACTIVE, setup.pipe)

    # ---- what the glue reports ----------------------------------------------------------
    def on_listening(self, ev: DataListening) -> None:
        setup = self.by_pipe.get(ev.pipe)
        if setup is not None:
            if ev.side == "client":
                setup.client_listen = ev.address
            else:
                setup.server_listen = ev.address
        self._outbox.fact("data.listen", pipe=ev.pipe, side=ev.side, address=addr.show(ev.address))
        self._waiting_listeners.discard((ev.pipe, ev.side))
        if not self._waiting_listeners and self._ask_when_listening is not None:
            ask, self._ask_when_listening = self._ask_when_listening, None
            self._ask_server(ask.command, ask.setup)
        self._spine.drain_client_lines()

    def on_rejected(self, ev: DataRejected) -> None:
        ends = self._ends
        expected = ends.client[0] if ev.side == "client" else (ends.upstream_peer or ("?", 0))[0]
        self._outbox.fact(
            "security.data_theft_refused",
            pipe=ev.pipe,
            side=ev.side,
            peer=addr.show(ev.peer),
            expected=expected,
        )

    def on_failed(self, ev: DataFailed) -> DataSetup | None:
        """Remember why the pipe failed (its transfer command gets 425); the set-up, if any."""
        setup = self.by_pipe.get(ev.pipe)
        if setup is not None and setup.failed is None:
            setup.failed = f"{ev.side} side {ev.kind}"
        return setup

    def listener_failed(self, ev: DataFailed, setup: DataSetup | None) -> bool:
        """The proxy could not even open its listener: the set-up is dropped; True if so."""
        if (ev.pipe, ev.side) not in self._waiting_listeners:
            return False
        self._waiting_listeners.clear()
        self._ask_when_listening = None
        if setup is not None:
            self._drop(setup)
        return True

    def on_closed(self, pipe: int) -> None:
        self.by_pipe.pop(pipe, None)
        if self.current is not None and self.current.pipe == pipe and self.current.failed is None:
            self.current = None  # a failed set-up stays, so that its transfer command gets 425

    def take(self) -> DataSetup | None:
        """The set-up a transfer command uses: it is no longer the current one."""
        setup, self.current = self.current, None
        return setup

    def forget(self, pipe: int) -> None:
        self.by_pipe.pop(pipe, None)

    # ---- the server's replies to the proxy's data commands ---------------------------------
    def _client_facing_reply(self, setup: DataSetup, server_reply: Reply | None) -> bytes:
        """The reply the client gets for its PASV/EPSV/PORT/EPRT once the server side is set."""
        if setup.client_mode == "active":
            if server_reply is not None and server_reply.code == 200:
                return server_reply.raw
            return crlf(f"200 {setup.client_verb} command successful (ftpdiag relays it).")
        assert setup.client_listen is not None
        host, port = setup.client_listen
        if setup.client_verb == "EPSV":
            if server_reply is not None and server_reply.code == 229:
                return crlf(f"229 {addr.rewrite_epsv_text(server_reply.text, port)}")
            return crlf(f"229 Entering Extended Passive Mode {addr.format_epsv(port)}")
        if server_reply is not None and server_reply.code == 227:
            return crlf(f"227 {addr.rewrite_pasv_text(server_reply.text, host, port)}")
        return crlf(f"227 Entering Passive Mode ({addr.format_host_port(host, port)}).")

    def _superseded(self, pending: Pending, reply: Reply) -> DataSetup | None:
        """The set-up this reply is for, or None when a newer PASV/PORT replaced it (the
        client pipelined them): that command gets the server's reply unchanged."""
        setup = self.by_pipe.get(pending.pipe or 0)
        if setup is None:
            self._outbox.fact("data.superseded", pipe=pending.pipe, code=reply.code)
            self._outbox.to_client(reply.raw)
        return setup

    def on_server_passive_reply(self, pending: Pending, reply: Reply) -> None:
        setup = self._superseded(pending, reply)
        if setup is None:
            return
        out, peer = self._outbox, self._ends.upstream_peer
        assert peer is not None and pending.command is not None
        if reply.code not in (227, 229):
            out.fact("data.setup_failed", pipe=setup.pipe, server_mode="passive", code=reply.code)
            if self.config.upstream_mode == "auto" and reply.code >= 500:
                out.fact("data.fallback", pipe=setup.pipe, to="active", code=reply.code)
                setup.server_mode = "active"
                self._listen(setup, "server")
                self._ask_server_when_listening(pending.command, setup)
                return
            self._drop(setup)
            out.to_client(reply.raw)
            return
        try:
            if reply.code == 227:
                advertised = addr.parse_pasv_reply(reply.text)
            else:
                advertised = (peer[0], addr.parse_epsv_reply(reply.text))
        except addr.AddressError as exc:
            out.fact(
                "protocol.bad_address",
                side="server",
                code=reply.code,
                text=reply.text,
                error=str(exc),
            )
            self._drop(setup)
            out.to_client(reply.raw)
            return
        dial = advertised if self.config.use_pasv_address else (peer[0], advertised[1])
        out.fact(
            "data.passive",
            pipe=setup.pipe,
            code=reply.code,
            advertised=addr.show(advertised),
            dialled=addr.show(dial),
            control_peer=peer[0],
        )
        setup.dialling_server = True
        out.emit(DialData(setup.pipe, "server", dial, self._spine.prot_p_of("server")))
        out.to_client(self._client_facing_reply(setup, reply))

    def on_server_active_reply(self, pending: Pending, reply: Reply) -> None:
        setup = self._superseded(pending, reply)
        if setup is None:
            return
        if reply.code // 100 != 2:
            self._outbox.fact(
                "data.setup_failed", pipe=setup.pipe, server_mode="active", code=reply.code
            )
            self._drop(setup)
            self._outbox.to_client(reply.raw)
            return
        self._outbox.to_client(self._client_facing_reply(setup, reply))

    def _drop(self, setup: DataSetup) -> None:
        if self.current is setup:
            self.current = None
        self._outbox.emit(FinishData(setup.pipe, abort=True))
