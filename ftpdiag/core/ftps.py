"""FTPS in the session (RFC 4217): AUTH TLS on either side, PBSZ/PROT, and TLS facts.

The proxy terminates TLS on both sides, like an intercepting HTTPS proxy, so it keeps reading
every command and reply. Two ways of running it:

- *mirror* (``upstream_tls="auto"``): the client's AUTH TLS, PBSZ and PROT are forwarded, and
  both sides start TLS on the server's 234; protection levels follow the server's answers.
- *proxy-initiated* (``upstream_tls="explicit"``/``"implicit"``, or ``"off"``): each side is
  set up on its own; the proxy answers the client's AUTH/PBSZ/PROT itself and, toward the
  server, sends AUTH TLS, PBSZ 0 and PROT P of its own after the greeting.

With ``tls_passthrough`` the proxy relays AUTH TLS and, on 234, stops reading (it goes blind).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import GoBlind, Output, Side, StartTLS, TLSEstablished, TLSFailed
from ftpdiag.core.messages import Command, Reply, parse_command

_INTERNAL_STEPS = ("AUTH TLS", "PBSZ 0", "PROT P")


class FTPSMixin:
    """The TLS part of ``Session``; it only touches the attributes declared here."""

    config: SessionConfig
    _out: list[Output]
    _queued: deque[bytes]
    closed: bool

    client_tls: bool
    server_tls: bool
    client_prot_p: bool
    server_prot_p: bool
    blind: bool
    _mirror: bool
    _tls_gate: bool

    # Provided by Session.
    _fact: Callable[..., None]
    _proxy_reply: Callable[..., None]
    _to_client: Callable[[bytes], None]
    _send_command: Callable[..., None]
    _close: Callable[[str], None]
    _drain_client_lines: Callable[[], None]

    def _init_tls(self) -> None:
        self.client_tls = self.config.client_tls == "implicit"
        self.server_tls = self.config.upstream_tls == "implicit"
        self.client_prot_p = self.server_prot_p = False
        self.blind = False
        self._mirror = False
        self._tls_gate = False

    # ---- the client's commands ---------------------------------------------------------
    def _client_auth(self, command: Command) -> None:
        cfg = self.config
        if cfg.tls_passthrough:
            self._send_command(command, command.raw, "auth")
        elif cfg.client_tls == "off":
            self._fact("proxy.unsupported", verb="AUTH", instead="plain FTP")
            self._proxy_reply(
                502, "AUTH TLS is not enabled on this ftpdiag listener (no certificate).", command
            )
        elif self.client_tls:
            self._proxy_reply(503, "The control connection is already protected.", command)
        elif cfg.upstream_tls == "auto" and not self.server_tls:
            self._send_command(command, command.raw, "auth")
        else:
            self._proxy_reply(
                234, f"AUTH {command.arg.strip().upper() or 'TLS'} successful.", command
            )
            self._out.append(StartTLS("client"))
            self.client_tls = True

    def _client_protection(self, command: Command) -> bool:
        """PBSZ/PROT/CCC answered by the proxy unless mirroring; True when handled here."""
        verb, arg = command.verb, command.arg.strip().upper()
        if verb == "CCC":
            self._proxy_reply(
                502,
                "CCC is not supported by ftpdiag: the control channel stays protected.",
                command,
            )
            return True
        if self._mirror or self.config.tls_passthrough:
            return False
        if not self.client_tls:
            self._proxy_reply(503, f"{verb} needs AUTH TLS first (RFC 4217 §9).", command)
        elif verb == "PBSZ":
            self._proxy_reply(200, "PBSZ=0", command)
        elif arg in ("P", "C"):
            self.client_prot_p = arg == "P"
            self._proxy_reply(200, f"Protection level set to {arg}.", command)
        else:
            self._proxy_reply(536, f"Protection level {arg or '?'} not supported.", command)
        return True

    # ---- replies to what the proxy sent ---------------------------------------------------
    def _on_auth_reply(self, reply: Reply) -> None:
        self._to_client(reply.raw)
        if reply.code != 234:
            return
        if self.config.tls_passthrough:
            self.blind = True
            self._fact("tls.blind", reason="TLS pass-through: the proxy relays without reading")
            self._out.append(GoBlind())
            return
        self._mirror = True
        self.client_tls = self.server_tls = True
        self._out.append(StartTLS("client"))
        self._out.append(StartTLS("server"))

    def _after_protection_reply(self, command: Command, reply: Reply) -> None:
        if self._mirror and command.verb == "PROT" and reply.code == 200:
            self.client_prot_p = self.server_prot_p = command.arg.strip().upper() == "P"

    def _begin_upstream_tls(self) -> None:
        """After the greeting, when the proxy itself must speak TLS to the server."""
        if self.config.upstream_tls == "explicit" and not self.server_tls:
            self._tls_gate = True
            self._internal(_INTERNAL_STEPS[0])
        elif self.server_tls and self.config.upstream_tls == "implicit":
            self._tls_gate = True
            self._internal(_INTERNAL_STEPS[1])

    def _internal(self, line: str) -> None:
        raw = line.encode() + b"\r\n"
        self._send_command(parse_command(raw), raw, "internal")

    def _on_internal_reply(self, command: Command, reply: Reply) -> None:
        step = f"{command.verb} {command.arg}"
        ok = (step == "AUTH TLS" and reply.code == 234) or (
            step != "AUTH TLS" and reply.code == 200
        )
        if not ok:
            self._fact("tls.upstream_refused", command=step, code=reply.code, text=reply.text)
            self._proxy_reply(421, f"ftpdiag: the server refused {step}: {reply.code} {reply.text}")
            self._close("server refused TLS")
            return
        if step == "AUTH TLS":
            self.server_tls = True
            self._out.append(StartTLS("server"))  # PBSZ follows once the handshake is done
        elif step == "PBSZ 0":
            self._internal(_INTERNAL_STEPS[2])
        else:
            self.server_prot_p = True
            self._tls_gate = False
            self._drain_client_lines()

    # ---- TLS facts from the glue -----------------------------------------------------------
    def _on_tls_established(self, ev: TLSEstablished) -> None:
        channel = "control" if ev.pipe is None else "data"
        fields: dict[str, Any] = {"side": ev.side, "channel": channel, "pipe": ev.pipe, **ev.facts}
        self._fact("tls.established", **fields)
        if ev.side == "server" and ev.pipe is None and self._tls_gate:
            self._internal(_INTERNAL_STEPS[1])

    def _on_tls_failed(self, ev: TLSFailed) -> None:
        channel = "control" if ev.pipe is None else "data"
        self._fact(
            "tls.failed",
            side=ev.side,
            channel=channel,
            pipe=ev.pipe,
            reason=ev.reason,
            detail=ev.detail,
            prot_p=self._prot_p_of(ev.side),
        )
        if ev.pipe is not None:
            return
        if ev.side == "server":
            self._proxy_reply(421, f"ftpdiag: TLS with the server failed: {ev.reason}.")
            self._close("server TLS failed")
        else:
            self._close("client TLS failed")

    def _prot_p_of(self, side: Side) -> bool:
        return self.client_prot_p if side == "client" else self.server_prot_p

    def _tls_tags(self) -> list[str]:
        return (["tls"] if self.server_tls else []) + (["prot_p"] if self.server_prot_p else [])
