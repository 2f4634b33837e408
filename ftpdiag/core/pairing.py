"""Which command a reply answers: the FIFO of commands sent upstream and not yet answered.

RFC 959 replies come in the order of the commands; preliminary 1xx replies leave the command in
place, a final reply pops it. Each entry says why it was sent (its ``Purpose``), which picks
what the session does with its final reply.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ftpdiag.core.messages import Command, Reply, parse_command
from ftpdiag.core.outbox import Outbox


class Purpose(Enum):
    """Why a command went upstream, and so what its final reply is for."""

    RELAY = "relay"  # the client's own command: its reply is relayed
    GREETING = "greeting"  # not a command: the connection itself waits for 220
    SERVER_PASSIVE = "server-passive"  # PASV/EPSV the proxy sends for a data set-up
    SERVER_ACTIVE = "server-active"  # PORT/EPRT the proxy sends for a data set-up
    TRANSFER = "transfer"  # RETR/STOR…: the final reply waits behind the data
    AUTH = "auth"  # the client's AUTH TLS, mirrored or passed through
    INTERNAL = "internal"  # the proxy's own AUTH TLS/PBSZ/PROT: not relayed


@dataclass(slots=True)
class Pending:
    """A command sent upstream and not yet answered by a final reply."""

    command: Command | None
    sent_at: float
    purpose: Purpose = Purpose.RELAY
    pipe: int | None = None
    #: The verb the server received: the client's, or the proxy's translation of it (PASV
    #: for the client's PORT under ``--upstream-mode passive``).
    upstream_verb: str | None = None


class Pairing:
    """The FIFO of pending commands; the session's only way to send a command upstream."""

    def __init__(self, outbox: Outbox, clock: Callable[[], float], started: float) -> None:
        self._outbox = outbox
        self._clock = clock
        self._pending: deque[Pending] = deque([Pending(None, started, Purpose.GREETING)])

    def send(
        self,
        command: Command,
        raw: bytes,
        purpose: Purpose = Purpose.RELAY,
        pipe: int | None = None,
    ) -> None:
        verb = command.verb if raw is command.raw else parse_command(raw).verb
        self._pending.append(Pending(command, self._clock(), purpose, pipe, verb))
        self._outbox.to_server(raw)

    @property
    def head(self) -> Pending | None:
        """The oldest unanswered command: the one the next reply answers."""
        return self._pending[0] if self._pending else None

    def answer(self, reply: Reply) -> Pending | None:
        """The command ``reply`` answers (None: unsolicited); a final reply pops it."""
        pending = self.head
        if pending is not None and not reply.preliminary:
            self._pending.popleft()
        return pending

    def __bool__(self) -> bool:
        return bool(self._pending)
