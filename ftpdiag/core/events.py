"""What the glue feeds the session (inputs) and what the session asks of it (outputs).

Inputs describe facts observed on sockets and timers; outputs are instructions (send these
bytes, open that listener) or ``Fact`` records for the log. The glue never decides protocol
matters; the session never touches a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

Side = Literal["client", "server"]
Address = tuple[str, int]


class TimerKind(Enum):
    """What a session timer watches."""

    GREETING = "greeting"  # the server's 220 after the control connection is up
    IDLE = "idle"  # any control traffic (``--idle-timeout``)
    COMPLETION = "completion"  # a transfer's final reply after its data ended


@dataclass(frozen=True, slots=True)
class Timer:
    """A session timer's key: its kind and, for a transfer's timer, the pipe."""

    kind: TimerKind
    pipe: int | None = None


GREETING_TIMER = Timer(TimerKind.GREETING)
IDLE_TIMER = Timer(TimerKind.IDLE)


def completion_timer(pipe: int) -> Timer:
    """The timer that waits for the final reply of the transfer on ``pipe``."""
    return Timer(TimerKind.COMPLETION, pipe)


# ---- inputs -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UpstreamConnected:
    """The control connection to the server is up; ``local`` is the proxy's own end."""

    local: Address
    peer: Address


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    """The control connection to the server could not be made."""

    kind: Literal["refused", "timeout", "dns", "unreachable", "error"]
    detail: str


@dataclass(frozen=True, slots=True)
class HostResolved:
    """The host a client chose at login (``USER user@host``) resolved to ``address``."""

    host: str
    address: str


@dataclass(frozen=True, slots=True)
class FromClient:
    """Bytes the client sent on the control connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FromServer:
    """Bytes the server sent on the control connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ControlClosed:
    """One side's control connection ended; ``clean`` is False for a reset."""

    side: Side
    clean: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DataListening:
    """A data listener asked for with ``ListenData`` is bound."""

    pipe: int
    side: Side
    address: Address


@dataclass(frozen=True, slots=True)
class DataConnected:
    """One end of a data pipe is connected (accepted or dialled)."""

    pipe: int
    side: Side
    peer: Address


@dataclass(frozen=True, slots=True)
class DataRejected:
    """A connection to a data listener came from a peer other than the expected one."""

    pipe: int
    side: Side
    peer: Address


@dataclass(frozen=True, slots=True)
class DataFailed:
    """One end of a data pipe never connected: dial refused/timed out, or nobody came."""

    pipe: int
    side: Side
    kind: Literal["refused", "timeout", "unreachable", "listen", "stall", "error"]
    detail: str


@dataclass(frozen=True, slots=True)
class DataProgress:
    """Periodic byte counts of a live pipe (the glue counts; no per-chunk events)."""

    pipe: int
    to_client: int
    to_server: int


@dataclass(frozen=True, slots=True)
class DataTally:
    """Byte counts of live pipes as the session ends (no fact: the transfer's end carries them)."""

    pipe: int
    to_client: int
    to_server: int


EndState = Literal["eof", "reset", "never", "closed"]


@dataclass(frozen=True, slots=True)
class DataClosed:
    """Both ends of a data pipe are down; how each end finished and what passed."""

    pipe: int
    to_client: int
    to_server: int
    client_end: EndState
    server_end: EndState
    first_closed: Side | None
    duration: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set with ``StartTimer`` expired."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class TLSEstablished:
    """A TLS handshake finished on a control connection (``pipe`` None) or a data end."""

    side: Side
    facts: Mapping[str, Any]
    pipe: int | None = None


@dataclass(frozen=True, slots=True)
class TLSFailed:
    """A TLS handshake failed; ``reason`` is the short cause, ``detail`` OpenSSL's words."""

    side: Side
    reason: str
    detail: str
    pipe: int | None = None


@dataclass(frozen=True, slots=True)
class BlindTraffic:
    """Bytes relayed unread after the proxy went blind (TLS pass-through)."""

    to_client: int
    to_server: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The proxy is stopping (SIGINT/SIGTERM)."""

    reason: str = "proxy shutdown"


Input = (
    UpstreamConnected
    | UpstreamFailed
    | HostResolved
    | FromClient
    | FromServer
    | ControlClosed
    | DataListening
    | DataConnected
    | DataRejected
    | DataFailed
    | DataProgress
    | DataTally
    | DataClosed
    | TimerFired
    | Shutdown
    | TLSEstablished
    | TLSFailed
    | BlindTraffic
)


# ---- outputs ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToClient:
    """Send these bytes to the client's control connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ToServer:
    """Send these bytes to the server's control connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ListenData:
    """Open a one-shot data listener on the side's interface accepting only ``allow_host``."""

    pipe: int
    side: Side
    host: str
    allow_host: str
    tls: bool = False


@dataclass(frozen=True, slots=True)
class ResolveHost:
    """Resolve the host the client chose at login; answer ``HostResolved`` or
    ``UpstreamFailed("dns", …)``."""

    host: str


@dataclass(frozen=True, slots=True)
class DialUpstream:
    """Connect the control connection to the server chosen at login."""

    address: Address


@dataclass(frozen=True, slots=True)
class DialData:
    """Connect the side's end of a data pipe to ``address``."""

    pipe: int
    side: Side
    address: Address
    tls: bool = False


@dataclass(frozen=True, slots=True)
class FinishData:
    """The transfer's final reply came: let the pipe drain (or abort it) and report closure."""

    pipe: int
    abort: bool


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start the timer: a running one with the same key is cancelled first."""

    timer: Timer
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop the timer if it runs."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class CloseControl:
    """Close both control connections after flushing what was written; the session is over."""

    reason: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Begin TLS on a control connection: as server toward the client, as client upstream."""

    side: Side


@dataclass(frozen=True, slots=True)
class GoBlind:
    """TLS pass-through: relay both control connections unread from now on."""


@dataclass(frozen=True, slots=True)
class Fact:
    """A record for the log and the diagnosis engine: an event name and JSON-safe fields."""

    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


Output = (
    ToClient
    | ToServer
    | ResolveHost
    | DialUpstream
    | ListenData
    | DialData
    | FinishData
    | StartTimer
    | CancelTimer
    | CloseControl
    | StartTLS
    | GoBlind
    | Fact
)
