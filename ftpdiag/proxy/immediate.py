"""Send a control line at once instead of on the reactor's next pass.

Twisted's ``transport.write`` only queues: the bytes leave on the next reactor iteration,
after an ``epoll_ctl`` to watch for writability, a poll and another ``epoll_ctl`` to stop
watching. A relayed command and its reply each pay that twice (client→server, server→client),
which was a quarter of the proxy's CPU per ``NOOP`` and most of its added latency. When
nothing is queued on a plain TCP transport, the line is sent straight away with the
transport's own ``writeSomeData``; whatever the kernel does not take, and every other case
(TLS, a queue already waiting, a closing connection, a transport of another kind), goes
through ``write`` as before, so the order of bytes is the transport's order.
"""

from __future__ import annotations

from typing import Any


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


def write_now(transport: Any, data: bytes) -> bool:
    """Write ``data`` on ``transport``, sending what the kernel takes right now.

    Returns True when the kernel said the connection is broken (the peer reset it). That
    error is reported once per socket: taken here, the read that follows sees a plain end of
    file, so the caller must remember that the connection was reset, not closed."""
    broken = False
    if data and _idle_plain_tcp(transport):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):
            data = data[sent:]
        else:
            broken = True
    if data:
        transport.write(data)  # queued; a broken connection ends through the reactor as usual
    return broken
