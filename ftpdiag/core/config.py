"""The knobs of a proxied session; the CLI and the pytest plugin map their options onto these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ftpdiag.core.routing import UpstreamPolicy

UpstreamMode = Literal["same", "passive", "active", "auto"]
ClientTLS = Literal["off", "explicit", "implicit"]
UpstreamTLS = Literal["auto", "off", "explicit", "implicit"]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Behaviour knobs; the CLI maps its flags onto these."""

    upstream_mode: UpstreamMode = "same"
    use_pasv_address: bool = False
    max_line: int = 8192
    max_reply_bytes: int = 1 << 20
    greeting_timeout: float = 10.0
    completion_timeout: float = 30.0
    idle_timeout: float = 0.0
    #: TLS toward the client: refused (no certificate), on AUTH TLS, or from the first byte.
    client_tls: ClientTLS = "off"
    #: TLS toward the server: mirror the client, never, always on AUTH TLS, or from the start.
    upstream_tls: UpstreamTLS = "auto"
    #: Relay TLS without terminating it: the proxy goes blind after AUTH TLS.
    tls_passthrough: bool = False
    #: A gateway: the client chooses the server at login (``USER user@host[:port]``).
    route_by_user: bool = False
    #: Which servers a routing gateway may dial.
    allow_upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)
