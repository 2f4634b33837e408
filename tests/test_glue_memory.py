"""The Twisted glue without sockets, in the style of Twisted's own tests: a ``MemoryReactorClock``
records listens, dials and timers, and ``StringTransport``s stand for the connections.

What is checked here is the glue's own logic (which output does what, how a pipe pauses,
resumes and mirrors a close); the same paths with real sockets and real peers are in
test_data_channels.py and test_rules_e2e.py.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
    GREETING_TIMER,
    IDLE_TIMER,
    CancelTimer,
    CloseControl,
    DataClosed,
    DataConnected,
    DataListening,
    DialData,
    DialUpstream,
    Fact,
    FinishData,
    GoBlind,
    HostResolved,
    Input,
    ListenData,
    Output,
    ResolveHost,
    Side,
    StartTimer,
    StartTLS,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
)
from ftpdiag.core.session import Session
from ftpdiag.proxy.control import ClientControl, ProxyFactory, ProxySettings, ServerControl
from ftpdiag.proxy.data import DataEnd, DataPipe, DataTimeouts
from ftpdiag.proxy.tls import ProxyTLS, UpstreamTLS

CLIENT = ("127.0.0.1", 50000)
PROXY = ("127.0.0.1", 2121)
UPSTREAM = ("127.0.0.1", 2100)
PLAIN = DataTimeouts(splice=False, progress=0, stall=0)


def _tcp(address: tuple[str, int]) -> IPv4Address:
    return IPv4Address("TCP", *address)


class TLSStringTransport(StringTransport):
    """A ``StringTransport`` that also records ``startTLS`` (Twisted's has none)."""

    tls: tuple[Any, bool] | None = None

    def startTLS(self, context: Any, normal: bool = True) -> None:  # Twisted's name
        self.tls = (context, normal)


# ---- a data pipe ------------------------------------------------------------------------------
class Owner:
    """The pipe's owner (``data.PipeOwner``): it keeps what the pipe reports."""

    def __init__(self) -> None:
        self.events: list[Input] = []

    def pipe_event(self, pipe: int, event: Input) -> None:
        self.events.append(event)

    def start_data_tls(self, transport: Any, side: Side, normal: bool) -> None:
        raise AssertionError("a plain pipe started TLS")

    def remember_upstream_session(self, session: Any) -> None:
        raise AssertionError("a plain pipe has no TLS session")


def _connected_ends(
    timeouts: DataTimeouts = PLAIN,
) -> tuple[DataPipe, MemoryReactorClock, Owner, StringTransport, StringTransport]:
    """A pipe whose client end was accepted first and whose server end was dialled after."""
    reactor, owner = MemoryReactorClock(), Owner()
    pipe = DataPipe(1, reactor, owner, timeouts)
    pipe.listen("client", "127.0.0.1", "127.0.0.1")
    listen_factory = reactor.tcpServers[-1][1]
    client_end = listen_factory.buildProtocol(_tcp(("127.0.0.1", 50001)))
    client_tcp = StringTransport(peerAddress=_tcp(("127.0.0.1", 50001)))
    client_end.makeConnection(client_tcp)
    assert client_tcp.producerState == "paused", "the first end must wait for its partner"
    pipe.dial("server", ("127.0.0.1", 5001))
    host, port, dial_factory, _, _ = reactor.tcpClients[-1]
    assert (host, port) == ("127.0.0.1", 5001)
    server_end = dial_factory.buildProtocol(_tcp(("127.0.0.1", 5001)))
    server_tcp = StringTransport(peerAddress=_tcp(("127.0.0.1", 5001)))
    server_end.makeConnection(server_tcp)
    return pipe, reactor, owner, client_tcp, server_tcp


def _end(pipe: DataPipe, side: Side) -> DataEnd:
    end = pipe.ends[side]
    assert end is not None
    return end


def test_the_first_end_is_paused_until_its_partner_comes() -> None:
    """The end that connects first reads nothing until the other is up; then both stream,
    each registered as the other's producer (back-pressure)."""
    _, _, owner, client_tcp, server_tcp = _connected_ends()
    assert client_tcp.producerState == "producing"
    assert client_tcp.producer is server_tcp and server_tcp.producer is client_tcp
    assert client_tcp.streaming and server_tcp.streaming
    assert [type(e) for e in owner.events] == [DataListening, DataConnected, DataConnected]


def test_bytes_are_relayed_and_counted() -> None:
    """What one end reads is written to the other, and the tally counts it per direction."""
    pipe, _, _, client_tcp, server_tcp = _connected_ends()
    _end(pipe, "server").dataReceived(b"file bytes")
    _end(pipe, "client").dataReceived(b"up")
    assert client_tcp.value() == b"file bytes" and server_tcp.value() == b"up"
    assert pipe.tally() == (10, 2)


def test_an_eof_is_mirrored_as_a_flushed_close() -> None:
    """The server's EOF closes the client's end after its data (loseConnection, no abort)."""
    pipe, _, owner, client_tcp, _ = _connected_ends()
    _end(pipe, "server").connectionLost(Failure(ConnectionDone()))
    assert client_tcp.disconnecting and not client_tcp.disconnected
    assert client_tcp.producer is None, "the lost end must stop being the other's producer"
    _end(pipe, "client").connectionLost(Failure(ConnectionDone()))
    closed = owner.events[-1]
    assert isinstance(closed, DataClosed)
    assert (closed.server_end, closed.client_end, closed.first_closed) == ("eof", "eof", "server")


def test_a_reset_is_mirrored_as_an_abort() -> None:
    """The server's reset aborts the client's end: a truncated file must not look whole."""
    pipe, _, owner, client_tcp, _ = _connected_ends()
    _end(pipe, "server").connectionLost(Failure(ConnectionLost()))
    assert client_tcp.disconnected
    _end(pipe, "client").connectionLost(Failure(ConnectionDone()))
    closed = owner.events[-1]
    assert isinstance(closed, DataClosed) and closed.server_end == "reset"


def test_progress_and_stall_run_on_the_reactor_clock() -> None:
    """Progress is reported every ``progress`` seconds; no byte for ``stall`` ends the pipe."""
    timeouts = DataTimeouts(splice=False, progress=5, stall=20)
    pipe, reactor, owner, client_tcp, _ = _connected_ends(timeouts)
    _end(pipe, "server").dataReceived(b"x" * 100)
    reactor.advance(5)
    assert [e for e in owner.events if type(e).__name__ == "DataProgress"][-1].to_client == 100
    for _ in range(5):
        reactor.advance(5)
    failed = [e for e in owner.events if type(e).__name__ == "DataFailed"]
    assert failed and failed[0].kind == "stall"
    assert client_tcp.disconnected, "a stalled pipe is aborted"


# ---- the control connection's _execute -----------------------------------------------------------
class Control:
    """A ``ClientControl`` on string transports, with its session and its records."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.wire_when_logged: list[bytes] = []
        tls = ProxyTLS(client_facing=object(), upstream=UpstreamTLS("127.0.0.1", verify=False))  # type: ignore[arg-type]
        settings = ProxySettings(upstream=UPSTREAM, data=PLAIN, tls=tls)
        self.factory = ProxyFactory(self.reactor, settings, self._sink)
        proto = self.factory.buildProtocol(_tcp(CLIENT))
        assert isinstance(proto, ClientControl)
        self.proto = proto
        self.client = TLSStringTransport(hostAddress=_tcp(PROXY), peerAddress=_tcp(CLIENT))
        proto.transport = self.client
        proto.session = Session(SessionConfig(), CLIENT, PROXY, UPSTREAM, self.reactor.seconds)
        server = ServerControl(proto)
        self.upstream = TLSStringTransport(peerAddress=_tcp(UPSTREAM))
        server.transport = self.upstream
        proto.server = server

    def _sink(self, event: str, fields: dict[str, Any]) -> None:
        self.records.append((event, fields))
        self.wire_when_logged.append(self.upstream.value())

    def run(self, *outputs: Output) -> None:
        self.proto._execute(list(outputs))


TESTED: set[type] = set()


def _tests(kind: type) -> Any:
    """Mark a test as the one for output ``kind`` (a test below holds them complete)."""
    TESTED.add(kind)
    return lambda test: test


@_tests(ToClient)
def test_to_client_writes_the_client_connection() -> None:
    """``ToClient``: the bytes go to the client's transport."""
    c = Control()
    c.run(ToClient(b"220 hi\r\n"))
    assert c.client.value() == b"220 hi\r\n" and c.upstream.value() == b""


@_tests(ToServer)
def test_to_server_writes_the_server_connection() -> None:
    """``ToServer``: the bytes go to the server's transport."""
    c = Control()
    c.run(ToServer(b"NOOP\r\n"))
    assert c.upstream.value() == b"NOOP\r\n" and c.client.value() == b""


@_tests(Fact)
def test_a_fact_is_diagnosed_and_logged_after_the_bytes() -> None:
    """``Fact``: logged with the session id, after the batch's bytes were written."""
    c = Control()
    c.run(Fact("command", {"verb": "NOOP", "arg": ""}), ToServer(b"NOOP\r\n"))
    assert c.records == [("command", {"session": c.proto.sid, "verb": "NOOP", "arg": ""})]
    assert c.wire_when_logged == [b"NOOP\r\n"], "the fact was logged before the bytes went"


@_tests(ListenData)
def test_listen_data_opens_a_listener_next_to_the_control_connection() -> None:
    """``ListenData``: a one-shot listener on the given interface; its port is reported."""
    c = Control()
    c.run(ListenData(1, "client", "127.0.0.1", "127.0.0.1"))
    assert [(s[0], s[3]) for s in c.reactor.tcpServers] == [(0, "127.0.0.1")]
    assert 1 in c.proto.pipes
    assert [e for e, _ in c.records] == ["data.listen"]


@_tests(DialData)
def test_dial_data_connects_the_side() -> None:
    """``DialData``: the pipe dials the address, with the data timeout."""
    c = Control()
    c.run(DialData(2, "server", ("127.0.0.1", 5001)))
    host, port, _, timeout, _ = c.reactor.tcpClients[-1]
    assert (host, port, timeout) == ("127.0.0.1", 5001, PLAIN.connect)


@_tests(FinishData)
def test_finish_data_ends_the_pipe() -> None:
    """``FinishData``: an aborted pipe with no ends closes at once and is forgotten."""
    c = Control()
    c.run(ListenData(1, "client", "127.0.0.1", "127.0.0.1"))
    c.run(FinishData(1, abort=True))
    assert 1 not in c.proto.pipes
    c.run(FinishData(7, abort=False))  # a pipe already gone: nothing to do


@_tests(StartTimer)
def test_start_timer_schedules_and_a_fired_timer_reaches_the_session() -> None:
    """``StartTimer``: one delayed call per key (a restart replaces it); when it fires the
    session gets ``TimerFired`` (here: no greeting, so 421 and the close)."""
    c = Control()
    c.proto.feed(UpstreamConnected(("127.0.0.1", 40000), UPSTREAM))
    c.run(StartTimer(GREETING_TIMER, 10.0))
    assert [call.getTime() for call in c.reactor.getDelayedCalls()] == [10.0]
    c.reactor.advance(10)
    assert c.client.value().startswith(b"421 ftpdiag: the server sent no greeting")
    events = [e for e, _ in c.records]
    assert "greeting.timeout" in events and "session.close" in events
    assert c.client.disconnecting


@_tests(CancelTimer)
def test_cancel_timer_stops_it() -> None:
    """``CancelTimer``: the delayed call is cancelled; cancelling an unknown key is harmless."""
    c = Control()
    c.run(StartTimer(IDLE_TIMER, 5.0), CancelTimer(IDLE_TIMER), CancelTimer(GREETING_TIMER))
    assert not c.proto.timers
    assert not [call for call in c.reactor.getDelayedCalls() if call.active()]


@_tests(CloseControl)
def test_close_control_tears_down_both_connections() -> None:
    """``CloseControl``: both control connections close, the session leaves the factory."""
    c = Control()
    c.run(CloseControl("client closed"))
    assert c.client.disconnecting and c.upstream.disconnecting
    assert c.proto.sid not in c.factory.sessions


@_tests(StartTLS)
def test_start_tls_starts_it_on_the_side() -> None:
    """``StartTLS``: as server toward the client, as client toward the server."""
    c = Control()
    c.run(StartTLS("client"))
    assert c.client.tls is not None and c.client.tls[1] is True and c.proto.handshaking
    c.run(StartTLS("server"))
    assert c.upstream.tls is not None


@_tests(GoBlind)
def test_go_blind_relays_unread() -> None:
    """``GoBlind``: from now on client bytes go to the server unread."""
    c = Control()
    c.run(GoBlind())
    c.proto.dataReceived(b"\x16\x03\x01 TLS bytes")
    assert c.upstream.value() == b"\x16\x03\x01 TLS bytes"


@_tests(ResolveHost)
def test_resolve_host_asks_the_injected_resolver() -> None:
    """``ResolveHost``: the connector's resolver (injected: no DNS in tests) answers, and the
    session is fed ``HostResolved``, or ``UpstreamFailed("dns")`` when it fails."""
    c = Control()
    asked: list[str] = []
    fed: list[Any] = []
    answers = {"ftp.example.test": defer.succeed("127.0.0.7")}

    def resolver(host: str) -> defer.Deferred[str]:
        asked.append(host)
        return answers.get(host) or defer.fail(error.DNSLookupError(host))

    c.factory.connector.resolver = resolver
    c.proto.feed = fed.append  # type: ignore[method-assign]
    c.run(ResolveHost("ftp.example.test"), ResolveHost("nowhere.example.test"))
    assert asked == ["ftp.example.test", "nowhere.example.test"]
    assert fed[0] == HostResolved("ftp.example.test", "127.0.0.7")
    assert isinstance(fed[1], UpstreamFailed) and fed[1].kind == "dns"


@_tests(DialUpstream)
def test_dial_upstream_connects_to_the_chosen_server() -> None:
    """``DialUpstream``: the control connection to the server the client chose is dialled."""
    c = Control()
    c.run(DialUpstream(("127.0.0.9", 2121)))
    host, port, *_ = c.reactor.tcpClients[-1]
    assert (host, port) == ("127.0.0.9", 2121)


def test_an_unknown_output_raises() -> None:
    """An output the glue does not know fails loudly instead of being dropped."""
    c = Control()
    with pytest.raises(TypeError, match="cannot carry out str"):
        c.run("not an output")  # type: ignore[arg-type]


def test_every_output_type_has_its_test() -> None:
    """A new output type in core/events.py must get a test of what the glue does with it."""
    assert set(typing.get_args(Output)) == TESTED
