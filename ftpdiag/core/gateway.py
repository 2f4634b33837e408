"""The gateway's part of a session: before the server is chosen, ftpdiag is the server.

With ``--route-by-user`` the proxy greets the client itself, answers what clients send before
they log in (FEAT, SYST, OPTS UTF8, NOOP), and reads the destination from ``USER
user@host[:port]`` (``core/routing.py``). It then resolves the host (through the glue's
injectable resolver), holds the address to the upstream policy, dials, and hands the session
over: the server's greeting is logged and diagnosed but not relayed (the client already had
one), unless it is a refusal, which answers the client's USER. Any refusal of the gateway
itself is a clean ``530`` with the reason, and the client may try another ``USER``.
"""

from __future__ import annotations

import ipaddress
from enum import Enum

from ftpdiag.core import addresses as addr
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import DialUpstream, HostResolved, ResolveHost, UpstreamFailed
from ftpdiag.core.messages import Command
from ftpdiag.core.outbox import Outbox, crlf
from ftpdiag.core.routing import Route, RouteSyntaxError, parse_route

GREETING = "ftpdiag gateway ready: log in as user@host[:port] to choose the server."
#: What the gateway answers itself before the login: a client's niceties, never an error.
_LOCAL_REPLIES = {
    "SYST": (215, "UNIX Type: L8"),
    "NOOP": (200, "NOOP ok."),
    "FEAT": (211, "No features before the server is chosen (log in as user@host)."),
}


class RouteState(Enum):
    """Where the choice of the server stands."""

    AWAITING_USER = "awaiting user"  # no usable USER user@host yet
    RESOLVING = "resolving"  # the host name is being resolved
    DIALLING = "dialling"  # the proxy connects to the chosen server
    ROUTED = "routed"  # the server is chosen and connected: the session relays


class Gateway:
    """Routing at login for one session (composed by ``Session`` when routing is on)."""

    def __init__(self, config: SessionConfig, out: Outbox, ends: addr.Endpoints) -> None:
        self.config = config
        self.out = out
        self.ends = ends
        self.state = RouteState.AWAITING_USER
        self.route: Route | None = None

    @property
    def holding(self) -> bool:
        """The client's next lines wait while the server is being resolved and dialled."""
        return self.state in (RouteState.RESOLVING, RouteState.DIALLING)

    @property
    def routed(self) -> bool:
        return self.state is RouteState.ROUTED

    def greet(self) -> None:
        self.out.proxy_reply(220, GREETING)

    def command(self, command: Command) -> bool:
        """Answer a command before the server is chosen; False once routed (relay it)."""
        if self.routed:
            return False
        verb = command.verb
        if verb == "USER":
            self._user(command.arg)
        elif verb == "QUIT":
            self.out.proxy_reply(221, "Goodbye (ftpdiag gateway).", verb)
        elif verb in _LOCAL_REPLIES:
            self.out.proxy_reply(*_LOCAL_REPLIES[verb], verb)
        elif verb == "OPTS" and command.arg.strip().upper().startswith("UTF8"):
            self.out.proxy_reply(200, "UTF8 mode is the server's to set; noted.", verb)
        else:
            self.out.proxy_reply(530, "Log in as user@host[:port] first (ftpdiag gateway).", verb)
        return True

    def _user(self, login: str) -> None:
        try:
            route = parse_route(login)
        except RouteSyntaxError as exc:
            self._refuse("malformed", str(exc))
            return
        self.route = route
        try:
            ipaddress.ip_address(route.host)
        except ValueError:
            self.state = RouteState.RESOLVING
            self.out.emit(ResolveHost(route.host))
            return
        self._dial(route.host)

    def resolved(self, ev: HostResolved) -> None:
        if self.state is RouteState.RESOLVING and self.route is not None:
            self._dial(ev.address)

    def _dial(self, address: str) -> None:
        route = self.route
        assert route is not None
        refusal = self.config.allow_upstream.refusal(route.host, address)
        if refusal is not None:
            self._refuse("not allowed", refusal)
            return
        target = (address, route.port)
        self.ends.upstream_target = target
        self.state = RouteState.DIALLING
        self.out.fact(
            "route.selected",
            user=route.user,
            host=route.host,
            port=route.port,
            upstream=addr.show(target),
        )
        self.out.emit(DialUpstream(target))

    def failed(self, ev: UpstreamFailed) -> bool:
        """The chosen server could not be resolved or reached: a 530 the client may retry
        with another host. False when routed (the session's own handling applies)."""
        if self.routed:
            return False
        assert self.route is not None
        target = f"{self.route.host}:{self.route.port}"
        self.out.fact("upstream.failed", kind=ev.kind, detail=ev.detail, upstream=target)
        self._refuse(ev.kind, f"cannot reach {target}: {ev.detail}")
        return True

    def connected(self) -> bytes:
        """The server is up: the login line to send it (``USER user``)."""
        assert self.route is not None
        self.state = RouteState.ROUTED
        return crlf(f"USER {self.route.user}")

    def relays_greeting(self, code: int) -> bool:
        """The server's greeting reaches the client only when it refuses (421, 530...): it
        then answers the client's USER."""
        return code >= 400

    def _refuse(self, kind: str, reason: str) -> None:
        self.state = RouteState.AWAITING_USER
        self.route = None
        self.out.fact("route.refused", kind=kind, reason=reason)
        self.out.proxy_reply(530, f"ftpdiag gateway: {reason}.", "USER")
