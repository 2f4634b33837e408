"""Send a control line at once instead of on the reactor's next pass.

Twisted's ``transport.write`` only queues: the bytes leave on the next reactor iteration,
after an ``epoll_ctl`` to watch for writability, a poll and another ``epoll_ctl`` to stop
watching. A relayed command and its reply each pay that twice (client→server, server→client),
which was a quarter of the proxy's CPU per ``NOOP`` and most of its added latency. When
nothing is queued on a plain TCP transport and nothing waits to be read on it, the line is
sent straight away with the transport's own ``writeSomeData``; whatever the kernel does not
take, and every other case (TLS, a queue already waiting, pending input or end of file, a
closing connection, a transport of another kind), goes through ``write`` as before, so the
order of bytes is the transport's order and the reactor still reads before it writes.
"""

from __future__ import annotations

import select
from typing import Any

from twisted.internet import error
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

_PENDING = select.POLLIN | select.POLLPRI | getattr(select, "POLLRDHUP", 0)


def _idle_plain_tcp(transport: Any) -> bool:
    """True when ``transport`` is a connected, non-TLS Twisted TCP connection with an empty
    write queue (only then can bytes bypass the queue without overtaking any)."""
    try:
        return bool(
            transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
            and not transport.TLS
            and not transport._tempDataLen
            and len(transport.dataBuffer) <= transport.offset
        )
    except AttributeError:  # not a twisted.internet.tcp connection
        return False


class ImmediateSender(Protocol):
    """A connection whose lines are sent at once (the control connections of the proxy)."""

    send_failed = False  # a send met a reset: the read that follows sees only end of file
    _poller: Any = None

    def send(self, data: bytes) -> None:
        transport: Any = self.transport
        if data and _idle_plain_tcp(transport) and self._nothing_to_read(transport):
            sent = transport.writeSomeData(data)
            if isinstance(sent, int):
                data = data[sent:]
            else:
                # A reset that arrived since ``_nothing_to_read`` looked. The kernel reports
                # it once per socket and this send took it: remember it was a reset.
                self.send_failed = True
        if data:
            transport.write(data)  # queued; a broken connection ends through the reactor

    def _nothing_to_read(self, transport: Any) -> bool:
        """Nothing waits to be read on the socket: no input, no end of file, no error.
        Otherwise the reactor must see it first, as it would have: a send would take a
        reset's error off the socket (the read would then find a mere end of file), and a
        send after the peer's FIN would make its kernel answer with a reset (a clean close
        would look like one)."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(transport.fileno(), _PENDING)
        return not self._poller.poll(0)

    def how_closed(self, reason: Failure) -> tuple[bool, str]:
        """(clean, detail) of the lost connection, a reset met by a send included."""
        clean = bool(reason.check(error.ConnectionDone))
        if clean and self.send_failed:
            return False, "Connection reset by peer (seen when sending)."
        return clean, reason.getErrorMessage()
