"""FTPS in the session (RFC 4217): AUTH TLS on either side, PBSZ/PROT, and TLS facts.

The proxy terminates TLS on both sides, like an intercepting HTTPS proxy, so it keeps reading
every command and reply. Two ways of running it:

- *mirror* (``upstream_tls="auto"``): the client's AUTH TLS, PBSZ and PROT are forwarded, and
  both sides start TLS on the server's 234; protection levels follow the server's answers.
- *proxy-initiated* (``upstream_tls="explicit"``/``"implicit"``, or ``"off"``): each side is
  set up on its own; the proxy answers the client's AUTH/PBSZ/PROT itself and, toward the
  server, sends AUTH TLS, PBSZ 0 and PROT P of its own after the greeting.

With ``tls_passthrough`` the proxy relays AUTH TLS and, on 234, stops reading (it goes blind).

``FTPS`` is a component of the session: it writes to the session's ``Outbox``, sends through
its ``Pairing``, and asks the rest of the session for exactly what ``Spine`` declares.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import GoBlind, Side, StartTLS, TLSEstablished, TLSFailed
from ftpdiag.core.messages import Command, Reply, parse_command
from ftpdiag.core.outbox import Outbox
from ftpdiag.core.pairing import Pairing, Purpose


class UpstreamStep(Enum):
    """The proxy's own TLS set-up toward the server, in order; the value is the command."""

    AUTH = "AUTH TLS"
    PBSZ = "PBSZ 0"
    PROT = "PROT P"


class Spine(Protocol):
    """What FTPS needs from the session beyond the outbox and the pairing FIFO."""

    def close(self, reason: str) -> None:
        """End the session (the client has been told why)."""

    def drain_client_lines(self) -> None:
        """Let the client's queued lines through, now that a gate may have opened."""


class FTPS:
    """The TLS state of one session and what the TLS commands and facts do to it."""

    def __init__(
        self, config: SessionConfig, outbox: Outbox, pairing: Pairing, spine: Spine
    ) -> None:
        self.config = config
        self._outbox = outbox
        self._pairing = pairing
        self._spine = spine
        self.client_tls = config.client_tls == "implicit"
        self.server_tls = config.upstream_tls == "implicit"
        self.client_prot_p = self.server_prot_p = False
        self.blind = False
        self._mirror = False
        #: The proxy's own set-up step toward the server, while it runs (the client's lines
        #: wait); None before it starts and once PROT P is accepted.
        self.upstream_step: UpstreamStep | None = None

    # ---- the client's commands ---------------------------------------------------------
    def client_auth(self, command: Command) -> None:
        cfg, out = self.config, self._outbox
        if cfg.tls_passthrough:
            self._pairing.send(command, command.raw, Purpose.AUTH)
        elif cfg.client_tls == "off":
            out.fact("proxy.unsupported", verb="AUTH", instead="plain FTP")
            out.proxy_reply(
                502,
                "AUTH TLS is not enabled on this ftpdiag listener (no certificate).",
                command.verb,
            )
        elif self.client_tls:
            out.proxy_reply(503, "The control connection is already protected.", command.verb)
        elif cfg.upstream_tls == "auto" and not self.server_tls:
            self._pairing.send(command, command.raw, Purpose.AUTH)
        else:
            out.proxy_reply(
                234, f"AUTH {command.arg.strip().upper() or 'TLS'} successful.", command.verb
            )
            out.emit(StartTLS("client"))
            self.client_tls = True

    def client_protection(self, command: Command) -> bool:
        """PBSZ/PROT/CCC answered by the proxy unless mirroring; True when handled here."""
        verb, arg = command.verb, command.arg.strip().upper()
        out = self._outbox
        if verb == "CCC":
            out.proxy_reply(
                502, "CCC is not supported by ftpdiag: the control channel stays protected.", verb
            )
            return True
        if self._mirror or self.config.tls_passthrough:
            return False
        if not self.client_tls:
            out.proxy_reply(503, f"{verb} needs AUTH TLS first (RFC 4217 §9).", verb)
        elif verb == "PBSZ":
            out.proxy_reply(200, "PBSZ=0", verb)
        elif arg in ("P", "C"):
            self.client_prot_p = arg == "P"
            out.proxy_reply(200, f"Protection level set to {arg}.", verb)
        else:
            out.proxy_reply(536, f"Protection level {arg or '?'} not supported.", verb)
        return True

    # ---- replies to what the proxy sent ---------------------------------------------------
    def on_auth_reply(self, reply: Reply) -> None:
        out = self._outbox
        out.to_client(reply.raw)
        if reply.code != 234:
            return
        if self.config.tls_passthrough:
            self.blind = True
            out.fact("tls.blind", reason="TLS pass-through: the proxy relays without reading")
            out.emit(GoBlind())
            return
        self._mirror = True
        self.client_tls = self.server_tls = True
        out.emit(StartTLS("client"))
        out.emit(StartTLS("server"))

    def after_protection_reply(self, command: Command, reply: Reply) -> None:
        if self._mirror and command.verb == "PROT" and reply.code == 200:
            self.client_prot_p = self.server_prot_p = command.arg.strip().upper() == "P"

    def begin_upstream_tls(self) -> None:
        """After the greeting, when the proxy itself must speak TLS to the server."""
        if self.config.upstream_tls == "explicit" and not self.server_tls:
            self._internal(UpstreamStep.AUTH)
        elif self.server_tls and self.config.upstream_tls == "implicit":
            self._internal(UpstreamStep.PBSZ)

    @property
    def gate(self) -> bool:
        """The proxy negotiates TLS with the server on its own: the client's lines wait."""
        return self.upstream_step is not None

    def _internal(self, step: UpstreamStep) -> None:
        self.upstream_step = step
        raw = step.value.encode() + b"\r\n"
        self._pairing.send(parse_command(raw), raw, Purpose.INTERNAL)

    def on_internal_reply(self, command: Command, reply: Reply) -> None:
        step = UpstreamStep(f"{command.verb} {command.arg}")
        wanted = 234 if step is UpstreamStep.AUTH else 200
        if reply.code != wanted:
            self._outbox.fact(
                "tls.upstream_refused", command=step.value, code=reply.code, text=reply.text
            )
            self._outbox.proxy_reply(
                421, f"ftpdiag: the server refused {step.value}: {reply.code} {reply.text}"
            )
            self._spine.close("server refused TLS")
            return
        if step is UpstreamStep.AUTH:
            self.server_tls = True
            self._outbox.emit(StartTLS("server"))  # PBSZ follows once the handshake is done
        elif step is UpstreamStep.PBSZ:
            self._internal(UpstreamStep.PROT)
        else:
            self.server_prot_p = True
            self.upstream_step = None
            self._spine.drain_client_lines()

    # ---- TLS facts from the glue -----------------------------------------------------------
    def on_tls_established(self, ev: TLSEstablished) -> None:
        channel = "control" if ev.pipe is None else "data"
        fields: dict[str, Any] = {"side": ev.side, "channel": channel, "pipe": ev.pipe, **ev.facts}
        self._outbox.fact("tls.established", **fields)
        if ev.side == "server" and ev.pipe is None and self.gate:
            self._internal(UpstreamStep.PBSZ)

    def on_tls_failed(self, ev: TLSFailed) -> None:
        channel = "control" if ev.pipe is None else "data"
        self._outbox.fact(
            "tls.failed",
            side=ev.side,
            channel=channel,
            pipe=ev.pipe,
            reason=ev.reason,
            detail=ev.detail,
            prot_p=self.prot_p_of(ev.side),
        )
        if ev.pipe is not None:
            return
        if ev.side == "server":
            self._outbox.proxy_reply(421, f"ftpdiag: TLS with the server failed: {ev.reason}.")
            self._spine.close("server TLS failed")
        else:
            self._spine.close("client TLS failed")

    def prot_p_of(self, side: Side) -> bool:
        return self.client_prot_p if side == "client" else self.server_prot_p

    def tags(self) -> list[str]:
        return (["tls"] if self.server_tls else []) + (["prot_p"] if self.server_prot_p else [])
