"""Zero-copy relaying of a plain data pipe: ``os.splice`` socket → kernel pipe → socket.

Relaying through Python costs a read into a bytes object and a write out of it for every
chunk; on a 2-core machine that caps a data channel well below the wire. Once both ends of a
plain (non-TLS) pipe are connected, the proxy takes both sockets out of the reactor and moves
each direction in a thread with ``splice``: the bytes never enter user space, a slow reader
blocks the thread (TCP flow control is the back-pressure), and the only per-chunk work is an
addition to the byte count. Each side's ending (EOF or reset) is still observed, and mirrored.

The threads never close a socket: file descriptors belong to the reactor, which closes them
only after both threads have finished (closing earlier could let a reused descriptor number
receive another connection's bytes). To stop a direction early, the reactor shuts the sockets
down, which wakes the blocked ``splice`` calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

from ftpdiag.core.events import EndState

AVAILABLE = sys.platform == "linux" and hasattr(os, "splice")
CHUNK = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: Finished workers kept waiting for the next direction (the rest exit).
KEEP_IDLE = 64


class Workers:
    """Threads for directions, reused: each direction blocks its thread for the whole
    transfer, so the pool grows to as many threads as there are directions at once, but a
    finished thread waits for the next one instead of exiting. Starting two threads per
    transfer was a fifth of the proxy's CPU per session when sessions transfer many small
    files; at most ``KEEP_IDLE`` idle threads (and their stacks) are kept."""

    def __init__(self, keep_idle: int = KEEP_IDLE) -> None:
        self.keep_idle = keep_idle
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that will take the next job without being asked

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="ftpdiag-splice", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            job()
            del job  # an idle thread must not keep the last direction alive
            with self._lock:
                if self._idle >= self.keep_idle:
                    return
                self._idle += 1


_WORKERS = Workers()


class Direction:
    """One direction of a pipe: bytes from ``src`` to ``dst`` until EOF or an error."""

    def __init__(
        self, src: socket.socket, dst: socket.socket, done: Callable[[Direction], None]
    ) -> None:
        self.src, self.dst, self.done = src, dst, done
        self.moved = 0
        self.src_end: EndState | None = None  # "eof" or "reset" once the source finished
        self.dst_failed = False  # writing to the destination failed (its peer went away)
        self.ended_at = 0.0  # when the source ended: which side closed first is told by this

    def start(self) -> None:
        _WORKERS.run(self._run)

    def release(self) -> None:
        """Drop the reference that ties a finished direction to its pipe."""
        self.done = _ignore

    def _run(self) -> None:
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, CHUNK)
        src, dst = self.src.fileno(), self.dst.fileno()
        try:
            while True:
                try:
                    n = os.splice(src, write_end, CHUNK)
                except OSError:
                    self.src_end = "reset"
                    self.ended_at = time.monotonic()
                    break
                if n == 0:
                    # Mirror the EOF as the reactor path's loseConnection does: the other
                    # socket is closed for good (FIN), which also ends the reverse direction.
                    self.src_end = "eof"
                    self.ended_at = time.monotonic()
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_RDWR)
                    break
                while n:
                    try:
                        sent = os.splice(read_end, dst, n)
                    except OSError:
                        self.dst_failed = True
                        self.src_end = "closed"
                        self.ended_at = time.monotonic()
                        return
                    n -= sent
                    self.moved += sent
        finally:
            os.close(read_end)
            os.close(write_end)
            self.done(self)


def _ignore(direction: Direction) -> None:
    """The callback of a released direction."""


def prepare(sock: socket.socket) -> None:
    """The threads block in ``splice``: the sockets must be in blocking mode."""
    sock.setblocking(True)


def interrupt(*socks: socket.socket) -> None:
    """Wake blocked directions: shut the sockets down (never close them from here)."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
