"""Dialling the upstream server, with an injectable resolver and failures put into words.

Tests inject a resolver so that no test performs a real DNS lookup; a numeric host never
reaches the resolver at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Literal, Protocol

from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure

from ftpdiag.core.events import Address

FailureKind = Literal["refused", "timeout", "dns", "unreachable", "error"]


class Resolver(Protocol):
    """Turns a host name into a numeric address (a Deferred firing with a string)."""

    def __call__(self, host: str) -> defer.Deferred[str]: ...


class UpstreamConnector:
    """Connects to ``(host, port)`` with a timeout; ``resolver`` defaults to the reactor's."""

    def __init__(
        self, reactor: Any, resolver: Resolver | None = None, timeout: float = 10.0
    ) -> None:
        self.reactor = reactor
        self.resolver: Resolver = resolver or reactor.resolve
        self.timeout = timeout

    def connect(self, target: Address, build: Callable[[], TwistedProtocol]) -> defer.Deferred[Any]:
        host, port = target
        try:
            ipaddress.ip_address(host)
            resolved: defer.Deferred[str] = defer.succeed(host)
        except ValueError:
            resolved = defer.maybeDeferred(self.resolver, host)
        return resolved.addCallback(self._dial, port, build)

    def _dial(
        self, ip: str, port: int, build: Callable[[], TwistedProtocol]
    ) -> defer.Deferred[Any]:
        kind = TCP6ClientEndpoint if ipaddress.ip_address(ip).version == 6 else TCP4ClientEndpoint
        endpoint = kind(self.reactor, ip, port, timeout=self.timeout)
        return endpoint.connect(Factory.forProtocol(build))

    @staticmethod
    def classify(failure: Failure) -> tuple[FailureKind, str]:
        """A failure kind for the diagnosis and a short human phrase for the 421 text."""
        if failure.check(error.DNSLookupError):
            return "dns", "the host name could not be resolved (DNS lookup failed)"
        if failure.check(error.ConnectionRefusedError):
            return "refused", "connection refused (nothing listens on that port)"
        if failure.check(error.TimeoutError, defer.TimeoutError):
            return "timeout", "connection timed out (no answer; a firewall may drop the packets)"
        if failure.check(error.NoRouteError, error.ConnectError):
            return "unreachable", f"cannot connect ({failure.getErrorMessage()})"
        return "error", failure.getErrorMessage()
