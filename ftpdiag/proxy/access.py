"""Who may use the proxy: client networks and session limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AccessPolicy:
    """Empty ``allow`` means every client; limits of 0 mean no limit."""

    allow: tuple[Network, ...] = field(default_factory=tuple)
    max_sessions: int = 0
    max_per_client: int = 0

    def refusal(self, host: str, sessions: int, from_client: int) -> str | None:
        """Why a new client must be refused, or None to accept it."""
        if self.allow:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return f"client {host} is not an IP address"
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not any(ip in net for net in self.allow):
                return f"client {host} is not allowed (see --allow-client)"
        if self.max_sessions and sessions >= self.max_sessions:
            return f"too many sessions ({self.max_sessions}, see --max-sessions)"
        if self.max_per_client and from_client >= self.max_per_client:
            limit = self.max_per_client
            return f"too many sessions from {host} ({limit}, see --max-sessions-per-client)"
        return None
