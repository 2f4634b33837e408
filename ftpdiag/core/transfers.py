"""Bookkeeping of data transfers: what was asked, what passed, how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

Direction = Literal["download", "upload"]
Mode = Literal["passive", "active"]

TRANSFER_VERBS: dict[str, Direction] = {
    "RETR": "download",
    "LIST": "download",
    "NLST": "download",
    "MLSD": "download",
    "STOR": "upload",
    "STOU": "upload",
    "APPE": "upload",
}
UPLOAD_VERBS = frozenset(verb for verb, way in TRANSFER_VERBS.items() if way == "upload")


@dataclass(slots=True)
class DataSetup:
    """A data connection being arranged by PASV/EPSV/PORT/EPRT, before its transfer command."""

    pipe: int
    client_verb: str
    client_mode: Mode
    server_mode: Mode
    client_target: tuple[str, int] | None = None
    client_listen: tuple[str, int] | None = None
    server_listen: tuple[str, int] | None = None
    #: Why an end of the pipe could not be connected (refused, timed out…), once it failed.
    failed: str | None = None
    #: The proxy is connecting to the server's passive port (the transfer command waits).
    dialling_server: bool = False


class TransferPhase(Enum):
    """Where a transfer is: its final reply and the end of its data come in either order."""

    RUNNING = "running"  # the command went upstream; no final reply, the pipe not down
    REPLIED = "replied"  # the final reply came; the pipe drains, the reply waits behind it
    DRAINED = "drained"  # the pipe is down; the final reply is awaited (completion timer)
    ENDED = "ended"  # ``transfer.end`` is logged (after both, or when the session ended)


@dataclass(slots=True)
class Transfer:
    """One transfer on one data pipe, from its command to its final reply and closure."""

    pipe: int
    verb: str
    path: str
    client_mode: Mode
    server_mode: Mode
    type: str
    rest: int
    started: float
    to_client: int = 0
    to_server: int = 0
    final_code: int | None = None
    phase: TransferPhase = TransferPhase.RUNNING
    client_end: str = "never"
    server_end: str = "never"
    first_closed: str | None = None
    duration: float = 0.0
    aborted_by: str | None = None
    #: Why the proxy itself ended the data connection ("no data for 300 s"), if it did.
    cut: str | None = None
    connected: int = 0

    @property
    def direction(self) -> Direction:
        return TRANSFER_VERBS[self.verb]

    @property
    def bytes(self) -> int:
        return self.to_client if self.direction == "download" else self.to_server

    @property
    def pipe_up(self) -> bool:
        """The glue has not reported the pipe down (nor has the transfer ended without it)."""
        return self.phase in (TransferPhase.RUNNING, TransferPhase.REPLIED)

    @property
    def open(self) -> bool:
        """Data may be moving: an end is connected and the pipe is not down."""
        return self.connected > 0 and self.pipe_up

    @property
    def ended(self) -> bool:
        return self.phase is TransferPhase.ENDED

    def start_fields(self) -> dict[str, Any]:
        return {
            "pipe": self.pipe,
            "command": self.verb,
            "path": self.path,
            "direction": self.direction,
            "mode": {"client": self.client_mode, "server": self.server_mode},
            "type": self.type,
            "rest": self.rest,
        }

    def end_fields(self, outcome: int | str) -> dict[str, Any]:
        seconds = self.duration
        rate = (self.bytes * 8 / seconds / 1e6) if seconds > 0 else 0.0
        return {
            **self.start_fields(),
            "bytes": self.bytes,
            "duration_ms": round(seconds * 1000, 1),
            "rate_mbps": round(rate, 2),
            "outcome": outcome,
            "client_end": self.client_end,
            "server_end": self.server_end,
            "first_closed": self.first_closed,
            "aborted_by": self.aborted_by,
        }
