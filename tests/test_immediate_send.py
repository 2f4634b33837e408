"""Control lines are sent at once (``proxy/immediate.py``): order kept, and a reset that the
send discovers is still reported as a reset. Real sockets on loopback, Twisted's reactor."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from ftpdiag.proxy.immediate import ImmediateSender, _idle_plain_tcp
from ftpdiag.testing import _reactor, in_reactor


class _Probe(ImmediateSender):
    def __init__(self, made: threading.Event, lost: list[tuple[Failure, tuple[bool, str]]]) -> None:
        self.made, self.lost = made, lost

    def connectionMade(self) -> None:
        self.made.set()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost.append((reason, self.how_closed(reason)))


def _serve() -> tuple[Any, list[_Probe], threading.Event, list[Any]]:
    made = threading.Event()
    lost: list[Any] = []
    probes: list[_Probe] = []

    def build() -> _Probe:
        probes.append(_Probe(made, lost))
        return probes[-1]

    port = in_reactor(
        lambda: _reactor().listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
    )
    return port, probes, made, lost


def test_lines_arrive_whole_and_in_order() -> None:
    """Many lines sent at once, some of them while the kernel buffer is full: every byte
    arrives, in order (what the kernel does not take is queued behind, never ahead)."""
    port, probes, made, _ = _serve()
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    try:
        assert made.wait(5)
        lines = [b"%06d %s\r\n" % (i, b"x" * (i % 3000)) for i in range(3000)]

        def send_all() -> None:
            for line in lines:
                probes[0].send(line)

        in_reactor(send_all)
        want = b"".join(lines)
        got = bytearray()
        while len(got) < len(want):
            chunk = client.recv(1 << 16)
            assert chunk, "connection closed early"
            got += chunk
        assert bytes(got) == want
    finally:
        client.close()
        in_reactor(port.stopListening)


def _close_then_send(closing: Any) -> tuple[Failure, tuple[bool, str]]:
    """The client ends its connection with ``closing(sock)`` while the proxy is not reading;
    then, in one reactor call, the proxy sends a line and resumes reading: as when a reply is
    relayed in the reactor pass that the client's FIN or RST arrived in."""
    port, probes, made, lost = _serve()
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    assert made.wait(5)
    probe = probes[0]
    in_reactor(lambda: probe.transport.stopReading())  # type: ignore[union-attr]
    closing(client)
    time.sleep(0.2)  # the FIN or RST reaches the proxy's socket

    def send_then_read() -> None:
        probe.send(b"226 Transfer complete.\r\n")
        probe.send(b"221 Goodbye.\r\n")
        probe.transport.startReading()  # type: ignore[union-attr]

    in_reactor(send_then_read)
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.01)
    in_reactor(port.stopListening)
    [(reason, how)] = lost
    return reason, how


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _fin(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_WR)
    sock.close()


def test_a_reset_is_reported_as_a_reset() -> None:
    """A send must not take the reset's error off the socket unseen (the read would then find
    a plain end of file): the connection ends as a reset."""
    reason, (clean, detail) = _close_then_send(_rst)
    assert not clean, (reason, detail)


def test_a_clean_close_is_reported_as_clean() -> None:
    """Sending to a client that has closed makes its kernel answer with a reset; the proxy
    must still report what the client did: a clean close."""
    reason, (clean, detail) = _close_then_send(_fin)
    assert clean, (reason, detail)


def test_a_reset_found_by_a_send_is_still_a_reset() -> None:
    """If a send itself meets the reset (it arrived after the check for pending input), the
    kernel's error is gone and the read finds a plain end of file: the close that follows is
    still reported as a reset."""
    sender = ImmediateSender()
    done = Failure(ConnectionDone())
    assert sender.how_closed(done) == (True, "Connection was closed cleanly.")
    sender.send_failed = True
    clean, detail = sender.how_closed(done)
    assert not clean and "reset" in detail.lower()


def test_the_fast_path_is_taken_on_a_live_tcp_transport() -> None:
    """On an idle plain TCP connection a line leaves through ``writeSomeData`` within the call,
    never through the queue: a Twisted release that renames the private attributes
    ``_idle_plain_tcp`` reads fails here instead of silently making every relayed line slower."""
    port, probes, made, _ = _serve()
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    try:
        assert made.wait(5)
        probe = probes[0]

        def send_and_watch() -> tuple[bool, list[bytes]]:
            transport: Any = probe.transport
            idle = _idle_plain_tcp(transport)
            queued: list[bytes] = []
            transport.write = queued.append  # the slow path, watched on this instance only
            try:
                probe.send(b"200 fast\r\n")
            finally:
                del transport.write
            return idle, queued

        idle, queued = in_reactor(send_and_watch)
        assert idle, "proxy/immediate.py no longer recognises a Twisted TCP transport"
        assert queued == [], "the line was queued instead of sent at once"
        assert client.recv(100) == b"200 fast\r\n"
    finally:
        client.close()
        in_reactor(port.stopListening)
