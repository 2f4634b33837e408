"""Starting a proxy listener: the factory, its port, and a clean stop on shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IListeningPort

from ftpdiag.core.addresses import show
from ftpdiag.core.events import Address
from ftpdiag.proxy.control import ProxyFactory, ProxySettings, Sink
from ftpdiag.proxy.twistedlog import take_over_twisted_log
from ftpdiag.proxy.upstream import UpstreamConnector


@dataclass
class RunningProxy:
    """A listening proxy: where it listens and how to stop it."""

    port: IListeningPort
    factory: ProxyFactory

    @property
    def address(self) -> str:
        return show(self.host_port)

    @property
    def host_port(self) -> Address:
        host = self.port.getHost()
        return host.host, host.port  # type: ignore[attr-defined]

    def stop(self, reason: str = "proxy shutdown") -> Any:
        """Close every session (each logs its ``session.close``), then stop listening."""
        self.factory.shutdown(reason)
        return self.port.stopListening()


def start_proxy(
    reactor: Any,
    listen: Address,
    settings: ProxySettings,
    sink: Sink,
    connector: UpstreamConnector | None = None,
    stop_on_shutdown: bool = True,
) -> RunningProxy:
    """Listen on ``listen`` (port 0 picks a free one) in front of ``settings.upstream``."""
    take_over_twisted_log()
    factory = ProxyFactory(reactor, settings, sink, connector)
    # A burst of clients (a whole office) must not overflow the accept queue: with SYN
    # cookies the overflowed clients believe they are connected and wait for a greeting.
    port = reactor.listenTCP(listen[1], factory, backlog=1024, interface=listen[0])
    running = RunningProxy(port, factory)
    if stop_on_shutdown:
        reactor.addSystemEventTrigger("before", "shutdown", running.stop)
    return running
