"""Control lines are sent at once (``proxy/immediate.py``): order kept, and a reset that the
send discovers is still reported as a reset. Real sockets on loopback, Twisted's reactor."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from ftpdiag.proxy.control import _Sender
from ftpdiag.testing import _reactor, in_reactor


class _Probe(_Sender):
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


def test_reset_taken_by_a_send_is_still_a_reset() -> None:
    """The client resets; the next line is sent before the reactor reads. The kernel reports
    the reset to that send only, the read then sees a plain end of file, and the connection
    must still end as a reset (not "closed cleanly")."""
    port, probes, made, lost = _serve()
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    assert made.wait(5)
    probe = probes[0]
    in_reactor(lambda: probe.transport.stopReading())  # type: ignore[union-attr]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    time.sleep(0.2)  # the RST reaches the proxy's socket


    def send_then_read() -> None:
        # As when a reply is relayed in the same reactor pass that the reset arrived in: the
        # reactor then reads (end of file) before it writes what the send left queued.
        probe.send(b"226 Transfer complete.\r\n")
        probe.transport.startReading()  # type: ignore[union-attr]

    in_reactor(send_then_read)
    assert probe.send_failed, "the send should have met the reset"
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.01)
    in_reactor(port.stopListening)
    [(reason, (clean, detail))] = lost
    assert not clean and "reset" in detail.lower(), (reason, detail)
