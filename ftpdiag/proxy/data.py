"""Data pipes: a client end and a server end relayed byte-for-byte with back-pressure.

Each end is accepted on a one-shot listener or dialled. The end that connects first is paused
(it reads nothing, so not even its EOF is seen) until its partner is up; then the two transports
are registered as each other's streaming producers, so a slow reader slows the writer and the
proxy holds at most about one read buffer per direction. Closure is mirrored: an EOF becomes a
flushed close on the other end, a reset becomes an abort. The only per-chunk work is a length
addition and a write (and, with ``--record-data``, the tap's copy: such pipes are not spliced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Interface

from twisted.internet import error
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from ftpdiag.core.addresses import same_host
from ftpdiag.core.events import (
    Address,
    DataClosed,
    DataConnected,
    DataFailed,
    DataListening,
    DataProgress,
    DataRejected,
    EndState,
    Input,
    Side,
    TLSEstablished,
    TLSFailed,
)
from ftpdiag.proxy import splice
from ftpdiag.proxy.addresses import host_port
from ftpdiag.proxy.recording import DataTap
from ftpdiag.proxy.timers import cancel
from ftpdiag.proxy.tls import classify_handshake, openssl_detail, resumable_session, tls_facts

READ_SIZE = 1 << 20
OTHER: dict[Side, Side] = {"client": "server", "server": "client"}


@dataclass(frozen=True, slots=True)
class DataTimeouts:
    """How long a data end may take to appear, and how long a finished pipe may drain."""

    connect: float = 30.0
    drain: float = 30.0
    progress: float = 5.0
    #: No byte in either direction for this long ends the pipe (0: never).
    stall: float = 300.0
    #: Relay plain pipes with os.splice (Linux) instead of through Python.
    splice: bool = True


class PipeOwner(Interface):
    """What a pipe needs from the control connection that owns it: one interface instead of
    callbacks handed over one by one."""

    def pipe_event(self, pipe: int, event: Input) -> None:
        """A fact of the pipe for the session (the pipe is gone after ``DataClosed``)."""

    def start_data_tls(self, transport: Any, side: Side, normal: bool) -> None:
        """Start TLS on a data end (toward the server it resumes the control's session)."""

    def remember_upstream_session(self, session: Any) -> None:
        """The server's newest TLS session, for the next data connection to resume."""


@implementer(IHandshakeListener)
class DataEnd(Protocol):
    """One socket of a pipe; it only forwards what it reads to the pipe."""

    def __init__(self, pipe: DataPipe, side: Side, accepted: bool) -> None:
        self.pipe = pipe
        self.side = side
        self.accepted = accepted
        self.received = 0
        self.lost = False
        self.handshaking = False
        self.tls_done = False

    @property
    def tcp(self) -> Any:
        """The TCP transport: a consumer, a push producer, and a TLS transport once started."""
        return self.transport

    def connectionMade(self) -> None:
        self.tcp.bufferSize = READ_SIZE
        if self.side in self.pipe.tls_sides:
            # RFC 4217 §7: whoever dialled, the FTP client is the TLS client and the server
            # the TLS server, so the proxy is TLS server toward clients, client toward servers.
            self.handshaking = True
            normal = self.accepted == (self.side == "client")
            self.pipe.owner.start_data_tls(self.transport, self.side, normal)
        self.pipe.end_connected(self)

    def handshakeCompleted(self) -> None:
        self.handshaking = False
        self.tls_done = True
        facts = tls_facts(self.tcp.getHandle())
        self.pipe.report(TLSEstablished(self.side, facts, self.pipe.id))

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.pipe.tap is not None and self.side == "server":
            self.pipe.tap.write(data)
        other = self.pipe.ends[OTHER[self.side]]
        if other is not None:
            other.tcp.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        if self.tls_done and self.side == "server":
            # Only now has the server's TLS 1.3 ticket surely arrived on this connection.
            session = resumable_session(self.tcp.getHandle())
            if session is not None:
                self.pipe.owner.remember_upstream_session(session)
        if self.handshaking:
            detail = openssl_detail(reason)
            self.pipe.report(TLSFailed(self.side, classify_handshake(detail), detail, self.pipe.id))
        self.pipe.end_lost(self, reason)


class _ListenFactory(Factory):
    noisy = False  # Twisted would log "Starting factory" twice per transfer

    def __init__(self, pipe: DataPipe, side: Side, allow_host: str) -> None:
        self.pipe, self.side, self.allow_host = pipe, side, allow_host

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if not same_host(addr.host, self.allow_host) or self.pipe.ends[self.side] is not None:
            self.pipe.report(DataRejected(self.pipe.id, self.side, (addr.host, addr.port)))
            return None
        self.pipe.stop_listening(self.side)
        return DataEnd(self.pipe, self.side, accepted=True)


class _DialFactory(ClientFactory):
    noisy = False

    def __init__(self, pipe: DataPipe, side: Side) -> None:
        self.pipe, self.side = pipe, side

    def buildProtocol(self, addr: Any) -> Protocol:
        self.pipe.dialling.discard(self.side)
        return DataEnd(self.pipe, self.side, accepted=False)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.pipe.dialling.discard(self.side)
        kind = (
            "refused"
            if reason.check(error.ConnectionRefusedError)
            else ("timeout" if reason.check(error.TimeoutError) else "unreachable")
        )
        self.pipe.failed(self.side, kind, reason.getErrorMessage())


def _end_state(reason: Failure) -> EndState:
    if reason.check(error.ConnectionAborted):
        return "closed"
    if reason.check(error.ConnectionDone):
        return "eof"
    return "reset"


class DataPipe:
    """The glue for one data connection; reports facts to the session through its owner."""

    def __init__(
        self,
        pipe_id: int,
        reactor: Any,
        owner: PipeOwner,
        timeouts: DataTimeouts,
        tap: DataTap | None = None,
    ) -> None:
        self.id = pipe_id
        self.reactor: IReactorTCP & IReactorTime = reactor  # type: ignore[valid-type]
        self.owner = owner
        self.timeouts = timeouts
        self.ends: dict[Side, DataEnd | None] = {"client": None, "server": None}
        self.states: dict[Side, EndState] = {"client": "never", "server": "never"}
        self.listeners: dict[Side, IListeningPort] = {}
        self.dialling: set[Side] = set()
        self.timers: dict[str, IDelayedCall] = {}
        self.first_closed: Side | None = None
        self.started: float | None = None
        self.progress: LoopingCall | None = None
        self.finishing = False
        self.done = False
        self.tls_sides: set[Side] = set()
        self.directions: list[splice.Direction] = []  # [to client, to server] while splicing
        self.splice_states: dict[Side, EndState] = {}
        self._finished_directions = 0
        #: ``--record-data``: keeps what the server sends (see ``proxy/recording.py``).
        self.tap = tap

    def report(self, event: Input) -> None:
        self.owner.pipe_event(self.id, event)

    # ---- set-up ------------------------------------------------------------------------
    def listen(self, side: Side, host: str, allow_host: str, tls: bool = False) -> None:
        if tls:
            self.tls_sides.add(side)
        try:
            port = self.reactor.listenTCP(0, _ListenFactory(self, side, allow_host), interface=host)
        except error.CannotListenError as exc:
            self.report(DataFailed(self.id, side, "listen", str(exc.socketError)))
            self.close()
            return
        self.listeners[side] = port
        self._start_timer(f"connect-{side}", lambda: self._nobody_came(side))
        self.report(DataListening(self.id, side, host_port(port.getHost())))

    def dial(self, side: Side, address: Address, tls: bool = False) -> None:
        if tls:
            self.tls_sides.add(side)
        self.dialling.add(side)
        self.reactor.connectTCP(
            address[0], address[1], _DialFactory(self, side), timeout=self.timeouts.connect
        )

    def stop_listening(self, side: Side) -> None:
        port = self.listeners.pop(side, None)
        if port is not None:
            port.stopListening()
        cancel(self.timers, f"connect-{side}")

    # ---- life of the ends ----------------------------------------------------------------
    def end_connected(self, end: DataEnd) -> None:
        self.ends[end.side] = end
        self.report(DataConnected(self.id, end.side, host_port(end.tcp.getPeer())))
        other = self.ends[OTHER[end.side]]
        if other is None:
            partner = OTHER[end.side]
            if self.finishing and partner not in self.listeners and partner not in self.dialling:
                end.tcp.loseConnection()  # nobody will come
            else:
                end.tcp.pauseProducing()
            return
        self.started = self.reactor.seconds()
        if self.tap is not None and not self.tap.accepts(bool(self.tls_sides)):
            self.tap = None
        if self.timeouts.splice and splice.AVAILABLE and not self.tls_sides and self.tap is None:
            self._start_splice()
        else:
            end.tcp.registerProducer(other.transport, True)
            other.tcp.registerProducer(end.transport, True)
            other.tcp.resumeProducing()
        ticks = [t for t in (self.timeouts.progress, self.timeouts.stall / 2) if t > 0]
        if ticks:
            self._last_moved = (self._counts(), self.reactor.seconds())
            self._last_report = self.reactor.seconds()
            self.progress = LoopingCall(self._tick)
            self.progress.clock = self.reactor
            self.progress.start(min(ticks), now=False)

    # ---- zero-copy relaying ------------------------------------------------------------------
    @property
    def splicing(self) -> bool:
        return bool(self.directions) and self._finished_directions < len(self.directions)

    def _sockets(self) -> tuple[Any, Any]:
        server, client = self.ends["server"], self.ends["client"]
        assert server is not None and client is not None
        return server.tcp.getHandle(), client.tcp.getHandle()

    def _start_splice(self) -> None:
        """Both ends are up and plain: hand the bytes to the kernel (see ``splice``)."""
        for end in self.ends.values():
            assert end is not None
            end.tcp.stopReading()
            end.tcp.stopWriting()
        server, client = self._sockets()
        splice.prepare(server)
        splice.prepare(client)

        def done(direction: splice.Direction) -> None:
            self.reactor.callFromThread(self._direction_done, direction)

        self.directions = [
            splice.Direction(server, client, done),
            splice.Direction(client, server, done),
        ]
        for direction in self.directions:
            direction.start()

    def _direction_done(self, direction: splice.Direction) -> None:
        self._finished_directions += 1
        if direction.src_end != "eof" or direction.dst_failed:
            splice.interrupt(*self._sockets())  # a reset ends the other direction too
        if self._finished_directions < len(self.directions):
            return
        to_client, to_server = self.directions
        for finished in self.directions:
            finished.release()
        # The threads report in any order; the side whose stream ended first closed first.
        self.first_closed = "server" if to_client.ended_at <= to_server.ended_at else "client"
        server_failed = to_client.src_end == "reset" or to_server.dst_failed
        client_failed = to_server.src_end == "reset" or to_client.dst_failed
        # As on the reactor path: the side that failed is "reset", and the proxy then closed
        # the other one ("closed"); otherwise each side ended as its direction saw it.
        self.splice_states = {
            "server": "reset" if server_failed else "closed" if client_failed else "eof",
            "client": "reset" if client_failed else "closed" if server_failed else "eof",
        }
        for end in self.ends.values():
            assert end is not None
            end.tcp.loseConnection()

    def end_lost(self, end: DataEnd, reason: Failure) -> None:
        state = self.splice_states.get(end.side) or _end_state(reason)
        self.states[end.side] = state
        if self.first_closed is None:
            self.first_closed = end.side
        other = self.ends[OTHER[end.side]]
        if other is not None and not other.lost:
            # The lost end no longer produces; a TLS transport would otherwise wait for its
            # producer to go before sending close_notify, and never close.
            other.tcp.unregisterProducer()
            if state == "eof":
                other.tcp.loseConnection()
            else:
                other.tcp.abortConnection()
        self._maybe_done()

    def failed(self, side: Side, kind: str, detail: str) -> None:
        self.report(DataFailed(self.id, side, kind, detail))  # type: ignore[arg-type]
        self.close()

    def _nobody_came(self, side: Side) -> None:
        self.timers.pop(f"connect-{side}", None)
        self.report(
            DataFailed(
                self.id, side, "timeout", f"no connection within {self.timeouts.connect:g} s"
            )
        )
        self.close()

    def _tick(self) -> None:
        """Progress every ``progress`` seconds and the stall check: one timer, no per-chunk work."""
        now, counts = self.reactor.seconds(), self._counts()
        if counts != self._last_moved[0]:
            self._last_moved = (counts, now)
        elif self.timeouts.stall > 0 and now - self._last_moved[1] >= self.timeouts.stall:
            source: Side = "server" if counts[0] >= counts[1] else "client"
            idle = now - self._last_moved[1]
            self.report(DataFailed(self.id, source, "stall", f"no data for {idle:.0f} s"))
            self.close()
            return
        if self.timeouts.progress > 0 and now - self._last_report >= self.timeouts.progress:
            self._last_report = now
            self.report(DataProgress(self.id, *counts))

    def tally(self) -> tuple[int, int]:
        return self._counts()

    def _counts(self) -> tuple[int, int]:
        if self.directions:
            return self.directions[0].moved, self.directions[1].moved
        server, client = self.ends["server"], self.ends["client"]
        return (server.received if server else 0, client.received if client else 0)

    # ---- ending ----------------------------------------------------------------------------
    def finish(self, abort: bool) -> None:
        """The transfer's final reply arrived: end the pipe now (abort) or let it drain."""
        self.finishing = True
        if self.splicing:
            if abort:
                splice.interrupt(*self._sockets())
            self._start_timer("drain", self.close, self.timeouts.drain)
            return
        for side in list(self.listeners):
            partner = self.ends[OTHER[side]]
            if abort or partner is None or partner.lost:
                self.stop_listening(side)
        if abort:
            # An end whose partner already closed is flushing what got through: let it.
            for side, end in self.ends.items():
                partner = self.ends[OTHER[side]]
                if end is not None and not end.lost and (partner is None or not partner.lost):
                    end.tcp.abortConnection()
        self._start_timer("drain", self.close, self.timeouts.drain)
        self._maybe_done()

    def close(self) -> None:
        """Tear everything down now (timeouts, session end)."""
        self.finishing = True
        for side in list(self.listeners):
            self.stop_listening(side)
        if self.splicing:
            splice.interrupt(*self._sockets())  # the threads end; the sockets close after
            return
        for end in self.ends.values():
            if end is not None and not end.lost:
                end.tcp.abortConnection()
        self.dialling.clear()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.done or self.listeners or self.dialling:
            return
        if any(end is not None and not end.lost for end in self.ends.values()):
            return
        if not self.finishing and sum(end is not None for end in self.ends.values()) < 2:
            return  # an end is still to be dialled once the transfer command comes
        self.done = True
        if self.tap is not None:
            self.tap.close()
        for name in list(self.timers):
            cancel(self.timers, name)
        if self.progress is not None and self.progress.running:
            self.progress.stop()
        to_client, to_server = self._counts()
        duration = self.reactor.seconds() - self.started if self.started is not None else 0.0
        self.report(
            DataClosed(
                self.id,
                to_client,
                to_server,
                self.states["client"],
                self.states["server"],
                self.first_closed,
                duration,
            )
        )

    def _start_timer(self, name: str, fn: Callable[[], None], seconds: float | None = None) -> None:
        cancel(self.timers, name)
        self.timers[name] = self.reactor.callLater(seconds or self.timeouts.connect, fn)

