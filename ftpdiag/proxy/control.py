"""Control-channel glue: accepts clients, dials the upstream, runs one ``Session`` per client.

Every socket callback becomes a core event; every output of the core is carried out here, in
order. Outputs are executed from a queue so that an event the execution itself provokes (a
listener reporting its port) is handled after the current batch, never in the middle of it.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ftpdiag.core.addresses import show
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
    Address,
    BlindTraffic,
    CancelTimer,
    CloseControl,
    ControlClosed,
    DataClosed,
    DataTally,
    DialData,
    DialUpstream,
    Fact,
    FinishData,
    FromClient,
    FromServer,
    GoBlind,
    HostResolved,
    Input,
    ListenData,
    Output,
    ResolveHost,
    Shutdown,
    Side,
    StartTimer,
    StartTLS,
    Timer,
    TimerFired,
    TLSEstablished,
    TLSFailed,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
)
from ftpdiag.core.session import Session
from ftpdiag.proxy.access import AccessPolicy
from ftpdiag.proxy.addresses import host_port
from ftpdiag.proxy.data import DataPipe, DataTimeouts
from ftpdiag.proxy.immediate import ImmediateSender
from ftpdiag.proxy.internal import describe
from ftpdiag.proxy.recording import DataRecording
from ftpdiag.proxy.timers import cancel
from ftpdiag.proxy.tls import (
    ProxyTLS,
    check_peer_name,
    classify_handshake,
    openssl_detail,
    tls_facts,
)
from ftpdiag.proxy.upstream import UpstreamConnector
from ftpdiag.rules.engine import Diagnoser

Sink = Callable[[str, dict[str, Any]], None]
#: How long a closing control connection may take to flush before it is aborted.
CLOSE_GRACE = 2.0


@dataclass
class ProxySettings:
    """Everything a proxy listener needs besides the reactor."""

    upstream: Address
    session: SessionConfig = field(default_factory=SessionConfig)
    data: DataTimeouts = field(default_factory=DataTimeouts)
    access: AccessPolicy = field(default_factory=AccessPolicy)
    tls: ProxyTLS = field(default_factory=ProxyTLS)
    lang: str = "en"
    record_data: DataRecording | None = None


def _tune_control_socket(transport: Any) -> None:
    """Control lines are small and each waits for an answer: Nagle's algorithm plus delayed
    ACKs would add ~40 ms to every relayed reply, so TCP_NODELAY is set. Urgent data is
    received inline: ftplib sends ``ABOR`` with MSG_OOB, and without SO_OOBINLINE the kernel
    would pull its last byte out of the stream."""
    transport.setTcpNoDelay(True)
    handle = getattr(transport, "getHandle", None)
    if handle is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        handle().setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)


@implementer(IHandshakeListener)
class ServerControl(ImmediateSender):
    """The proxy's control connection to the upstream server."""

    def __init__(self, owner: ClientControl) -> None:
        self.owner = owner
        self.handshaking = False

    def connectionMade(self) -> None:
        _tune_control_socket(self.transport)
        if self.owner.factory.settings.session.upstream_tls == "implicit":
            self.start_tls()

    def start_tls(self) -> None:
        self.handshaking = True
        self.owner.factory.settings.tls.start(self.transport, "server", True)

    def handshakeCompleted(self) -> None:
        self.handshaking = False
        conn = self.transport.getHandle()  # type: ignore[union-attr]
        upstream = self.owner.factory.settings.tls.upstream
        if upstream is not None and upstream.verify:
            wrong = check_peer_name(conn, upstream.server_name)
            if wrong is not None:
                self.owner.feed(
                    TLSFailed("server", wrong, f"certificate does not name {upstream.server_name}")
                )
                self.transport.abortConnection()  # type: ignore[union-attr]
                return
        self.owner.feed(TLSEstablished("server", tls_facts(conn)))

    def dataReceived(self, data: bytes) -> None:
        if self.owner.blind:
            self.owner.blind_bytes[0] += len(data)  # type: ignore[index]
            self.owner.send(data)
            return
        self.owner.feed(FromServer(data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.owner.server = None
        if self.handshaking:
            self.handshaking = False
            upstream = self.owner.factory.settings.tls.upstream
            handle = getattr(self.transport, "getHandle", lambda: None)()
            verify = upstream.failure_reason(handle) if upstream is not None else None
            detail = openssl_detail(reason)
            self.owner.feed(TLSFailed("server", classify_handshake(detail, verify), detail))
        self.owner.report_blind_traffic()
        self.owner.tally_pipes()
        self.owner.feed(ControlClosed("server", *self.how_closed(reason)))


@implementer(IHandshakeListener)
class ClientControl(ImmediateSender):
    """One client's control connection, and the owner of its session."""

    factory: ProxyFactory

    def __init__(self, factory: ProxyFactory, sid: str) -> None:
        self.factory = factory
        self.sid = sid
        self.reactor = factory.reactor
        self.server: ServerControl | None = None
        self.session: Session | None = None
        self.diagnoser = Diagnoser(factory.settings.lang)
        self.pipes: dict[int, DataPipe] = {}
        self.timers: dict[Timer, IDelayedCall] = {}
        self._inbox: deque[Input] = deque()
        self._busy = False
        self.handshaking = False
        self.blind = False
        self._closing = False
        self._failed = False  # an internal error ended the session: later events are dropped
        self.blind_bytes: list[int] | None = [0, 0]  # to client, to server
        self.upstream_session: Any = None  # the newest TLS session with the server

    # ---- Twisted callbacks -------------------------------------------------------------
    def connectionMade(self) -> None:
        try:
            self._start()
        except Exception as exc:  # a bug must cost one session, never the proxy
            self._internal_error(exc)

    def _start(self) -> None:
        _tune_control_socket(self.transport)
        peer, host = self.transport.getPeer(), self.transport.getHost()  # type: ignore[union-attr]
        settings = self.factory.settings
        self.session = Session(
            settings.session,
            client=host_port(peer),
            client_local=host_port(host),
            upstream=settings.upstream,
            clock=self.reactor.seconds,
        )
        self._execute(self.session.start())
        if settings.session.client_tls == "implicit":
            self._start_client_tls()
        if not settings.session.route_by_user:  # a gateway dials once the client has chosen
            self._dial_upstream(settings.upstream)

    def _dial_upstream(self, target: Address) -> None:
        connecting = self.factory.connector.connect(target, lambda: ServerControl(self))
        connecting.addCallbacks(self._upstream_up, self._upstream_failed)

    def _resolve(self, host: str) -> None:
        """The gateway's look-up of the host a client chose, through the injectable resolver
        (so that tests never perform a real DNS look-up)."""
        resolving = defer.maybeDeferred(self.factory.connector.resolver, host)
        resolving.addCallbacks(
            lambda address: self.feed(HostResolved(host, str(address))),
            lambda failure: self._upstream_failed(failure),
        )

    def dataReceived(self, data: bytes) -> None:
        if self.blind:
            self.blind_bytes[1] += len(data)  # type: ignore[index]
            if self.server is not None:
                self.server.send(data)
            return
        self.feed(FromClient(data))

    def handshakeCompleted(self) -> None:
        self.handshaking = False
        self.feed(TLSEstablished("client", tls_facts(self.transport.getHandle())))  # type: ignore[union-attr]

    def report_blind_traffic(self) -> None:
        """Once, when the first side of a pass-through session closes."""
        if self.blind and self.blind_bytes is not None:
            counts, self.blind_bytes = self.blind_bytes, None
            self.feed(BlindTraffic(*counts))

    def _start_client_tls(self) -> None:
        self.handshaking = True
        self.factory.settings.tls.start(self.transport, "client", True)

    def tally_pipes(self) -> None:
        """Give the session the byte counts of live pipes before it ends their transfers."""
        for pipe_id, pipe in list(self.pipes.items()):
            self.feed(DataTally(pipe_id, *pipe.tally()))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.tally_pipes()
        if self.handshaking:
            self.handshaking = False
            detail = openssl_detail(reason)
            self.feed(TLSFailed("client", classify_handshake(detail), detail))
        self.report_blind_traffic()
        self.feed(ControlClosed("client", *self.how_closed(reason)))
        self._teardown()

    # ---- upstream --------------------------------------------------------------------------
    def _upstream_up(self, server: ServerControl) -> None:
        if self._failed or self.session is None or self.session.closed:
            server.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.server = server
        assert server.transport is not None
        transport = server.transport
        self.feed(UpstreamConnected(host_port(transport.getHost()), host_port(transport.getPeer())))

    def _upstream_failed(self, failure: Failure) -> None:
        kind, detail = UpstreamConnector.classify(failure)
        self.feed(UpstreamFailed(kind, detail))

    # ---- the event loop of one session ----------------------------------------------------
    def feed(self, event: Input) -> None:
        if self._failed:
            return
        self._inbox.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._inbox:
                assert self.session is not None
                self._execute(self.session.handle(self._inbox.popleft()))
        except Exception as exc:  # a bug must cost one session, never the proxy
            self._internal_error(exc)
        finally:
            self._busy = False

    def _internal_error(self, exc: Exception) -> None:
        """Report the bug once, answer the client ``421`` and close both control connections
        (and the data pipes) now: a client left waiting for a reply would hang until its own
        timeout, and lftp would reconnect into the same bug."""
        self._inbox.clear()
        if self._failed:
            return
        self._failed = True
        self.factory.sink("proxy.internal_error", {"session": self.sid, **describe(exc)})
        if self.transport is not None:
            self.transport.write(b"421 ftpdiag: internal error; closing this session.\r\n")
        self._teardown()

    def _execute(self, outputs: list[Output]) -> None:
        """Carry out one batch of outputs in order, except that its facts are logged and
        diagnosed after the batch's bytes are on their way: logging is then off the path of
        every relayed command and reply (the record still follows within the same call)."""
        facts: list[Fact] = []
        for out in outputs:
            if isinstance(out, ToClient):
                self.send(out.data)
            elif isinstance(out, ToServer):
                if self.server is not None:
                    self.server.send(out.data)
            elif isinstance(out, Fact):
                facts.append(out)
            elif isinstance(out, ListenData):
                self._pipe(out.pipe).listen(out.side, out.host, out.allow_host, out.tls)
            elif isinstance(out, DialData):
                self._pipe(out.pipe).dial(out.side, out.address, out.tls)
            elif isinstance(out, FinishData):
                pipe = self.pipes.get(out.pipe)
                if pipe is not None:
                    pipe.finish(out.abort)
            elif isinstance(out, StartTimer):
                cancel(self.timers, out.timer)
                self.timers[out.timer] = self.reactor.callLater(out.seconds, self._fire, out.timer)
            elif isinstance(out, CancelTimer):
                cancel(self.timers, out.timer)
            elif isinstance(out, CloseControl):
                self._teardown()
            elif isinstance(out, StartTLS):
                if out.side == "client":
                    self._start_client_tls()
                elif self.server is not None:
                    self.server.start_tls()
            elif isinstance(out, GoBlind):
                self.blind = True
            elif isinstance(out, ResolveHost):
                self._resolve(out.host)
            elif isinstance(out, DialUpstream):
                self._dial_upstream(out.address)
            else:
                raise TypeError(f"the glue cannot carry out {type(out).__name__}")
        for fact in facts:
            for event, fields in self.diagnoser.process(fact.event, dict(fact.fields)):
                self.factory.sink(event, {"session": self.sid, **fields})

    def _pipe(self, pipe_id: int) -> DataPipe:
        pipe = self.pipes.get(pipe_id)
        if pipe is None:
            recording = self.factory.settings.record_data
            tap = None
            if recording is not None:
                tap = recording.tap(self.sid, pipe_id, self._data_recorded)
            pipe = DataPipe(pipe_id, self.reactor, self, self.factory.settings.data, tap)
            self.pipes[pipe_id] = pipe
        return pipe

    def _data_recorded(self, fields: dict[str, Any]) -> None:
        self.factory.sink("transfer.data", {"session": self.sid, **fields})

    # ---- what a data pipe asks of its owner (data.PipeOwner) ---------------------------------
    def pipe_event(self, pipe: int, event: Input) -> None:
        if isinstance(event, DataClosed):
            self.pipes.pop(pipe, None)
        self.feed(event)

    def start_data_tls(self, transport: Any, side: Side, normal: bool) -> None:
        """Data-channel TLS; toward the server it resumes the newest session with the server
        (the control connection's at first): with TLS 1.3 each handshake brings new tickets,
        and servers such as vsftpd only require that *a* session of theirs is resumed."""
        resume = self._upstream_session if side == "server" else None
        self.factory.settings.tls.start(transport, side, normal, resume)

    def _upstream_session(self) -> Any:
        if self.upstream_session is not None:
            return self.upstream_session
        if self.server is not None and self.server.transport is not None:
            return self.server.transport.getHandle().get_session()  # type: ignore[attr-defined]
        return None

    def remember_upstream_session(self, session: Any) -> None:
        self.upstream_session = session

    def _fire(self, timer: Timer) -> None:
        self.timers.pop(timer, None)
        self.tally_pipes()  # a timer may end the session: its transfers keep their bytes
        self.feed(TimerFired(timer))

    def _teardown(self) -> None:
        for timer in list(self.timers):
            cancel(self.timers, timer)
        for pipe in list(self.pipes.values()):
            pipe.close()
        transports = [self.transport] + ([self.server.transport] if self.server else [])
        for transport in transports:
            transport.loseConnection()  # type: ignore[union-attr]
        if not self._closing:
            # A peer that stops reading would keep the socket and its unsent replies forever:
            # what is not flushed within the grace period is dropped.
            self._closing = True
            self.reactor.callLater(CLOSE_GRACE, self._abort, transports)
        self.factory.forget(self)

    @staticmethod
    def _abort(transports: list[Any]) -> None:
        for transport in transports:
            if transport is not None and transport.connected:
                transport.abortConnection()

    def shutdown(self, reason: str) -> None:
        self.tally_pipes()
        self.feed(Shutdown(reason))


class ProxyFactory(Factory):
    """Builds one ``ClientControl`` per accepted client, within the access policy."""

    noisy = False

    def __init__(
        self,
        reactor: Any,
        settings: ProxySettings,
        sink: Sink,
        connector: UpstreamConnector | None = None,
    ) -> None:
        self.reactor = reactor
        self.settings = settings
        self.sink = sink
        self.connector = connector or UpstreamConnector(reactor)
        self.sessions: dict[str, ClientControl] = {}
        self.per_client: dict[str, int] = {}

    def buildProtocol(self, addr: Any) -> Protocol | None:
        refusal = self.settings.access.refusal(
            addr.host, len(self.sessions), self.per_client.get(addr.host, 0)
        )
        if refusal is not None:
            self.sink("access.refused", {"client": show((addr.host, addr.port)), "reason": refusal})
            return _Refuse(refusal)
        sid = secrets.token_hex(2)
        while sid in self.sessions:
            sid = secrets.token_hex(2)
        proto = ClientControl(self, sid)
        self.sessions[sid] = proto
        self.per_client[addr.host] = self.per_client.get(addr.host, 0) + 1
        proto.client_host = addr.host  # type: ignore[attr-defined]
        return proto

    def forget(self, proto: ClientControl) -> None:
        if self.sessions.pop(proto.sid, None) is not None:
            host = proto.client_host  # type: ignore[attr-defined]
            left = self.per_client.get(host, 1) - 1
            if left > 0:
                self.per_client[host] = left
            else:
                self.per_client.pop(host, None)

    def shutdown(self, reason: str = "proxy shutdown") -> None:
        for proto in list(self.sessions.values()):
            proto.shutdown(reason)


class _Refuse(Protocol):
    """Answers a refused client with 421 and closes (RFC 959: 421 may answer the connection)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        self.transport.write(f"421 ftpdiag: {self.reason}.\r\n".encode())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
