"""Prometheus metrics of a long-running proxy, counted from the facts it logs.

The counters watch the same records the log gets (one ``observe`` per record, in the reactor
thread), so they can never disagree with the log. Labels are bounded: a hostile client that
sends ten thousand made-up verbs adds one ``other`` series, not ten thousand. The endpoint is
Twisted's web server with prometheus_client's own resource, on the reactor that runs the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.twisted import MetricsResource
from twisted.internet.interfaces import IListeningPort
from twisted.web.server import Site

from ftpdiag.core.events import Address

Sink = Callable[[str, dict[str, Any]], None]
_VERB = re.compile(r"[A-Z]{3,4}")
#: Distinct verbs counted by name; later ones are counted as ``other``.
MAX_VERBS = 64


class Metrics:
    """The proxy's counters, on a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_open = Gauge("ftpdiag_sessions_open", "Sessions open now", registry=r)
        self.sessions = Counter("ftpdiag_sessions", "Sessions opened", registry=r)
        self.refused = Counter(
            "ftpdiag_clients_refused", "Clients refused by the access policy", registry=r
        )
        self.commands = Counter("ftpdiag_commands", "Commands relayed", ["verb"], registry=r)
        self.replies = Counter("ftpdiag_replies", "Replies relayed", ["reply_class"], registry=r)
        self.diagnoses = Counter(
            "ftpdiag_diagnoses", "Diagnoses made", ["rule", "severity"], registry=r
        )
        self.transfers = Counter(
            "ftpdiag_transfers", "Transfers ended", ["direction", "outcome"], registry=r
        )
        self.transfer_bytes = Counter(
            "ftpdiag_transfer_bytes", "Bytes relayed", ["direction", "outcome"], registry=r
        )
        self.upstream_failures = Counter(
            "ftpdiag_upstream_connect_failures", "Failed connections to servers", ["kind"],
            registry=r,
        )
        self.tls = Counter(
            "ftpdiag_tls_handshakes", "TLS handshakes", ["side", "channel", "result"], registry=r
        )
        self.internal_errors = Counter(
            "ftpdiag_internal_errors", "Bugs of ftpdiag (see proxy.internal_error)", registry=r
        )
        self._verbs: set[str] = set()
        self._by_event: Mapping[str, Callable[[dict[str, Any]], None]] = {
            "session.open": self._session_open,
            "session.close": lambda _f: self.sessions_open.dec(),
            "access.refused": lambda _f: self.refused.inc(),
            "command": self._command,
            "reply": self._reply,
            "diagnosis": self._diagnosis,
            "transfer.end": self._transfer_end,
            "upstream.failed": lambda f: self.upstream_failures.labels(str(f.get("kind"))).inc(),
            "tls.established": lambda f: self._tls(f, "ok"),
            "tls.failed": lambda f: self._tls(f, "failed"),
            "proxy.internal_error": lambda _f: self.internal_errors.inc(),
        }

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        handler = self._by_event.get(event)
        if handler is not None:
            handler(fields)

    def wrap(self, sink: Sink) -> Sink:
        """A sink that counts each record, then hands it on."""

        def counted(event: str, fields: dict[str, Any]) -> None:
            self.observe(event, fields)
            sink(event, fields)

        return counted

    # ---- one method per fact -------------------------------------------------------------
    def _session_open(self, _fields: dict[str, Any]) -> None:
        self.sessions.inc()
        self.sessions_open.inc()

    def _command(self, fields: dict[str, Any]) -> None:
        verb = str(fields.get("verb", ""))
        if verb not in self._verbs:
            if not _VERB.fullmatch(verb) or len(self._verbs) >= MAX_VERBS:
                verb = "other"
            else:
                self._verbs.add(verb)
        self.commands.labels(verb).inc()

    def _reply(self, fields: dict[str, Any]) -> None:
        code = fields.get("code")
        label = f"{code // 100}xx" if isinstance(code, int) and 100 <= code <= 699 else "other"
        self.replies.labels(label).inc()

    def _diagnosis(self, fields: dict[str, Any]) -> None:
        self.diagnoses.labels(str(fields.get("rule")), str(fields.get("severity"))).inc()

    def _transfer_end(self, fields: dict[str, Any]) -> None:
        labels = (str(fields.get("direction")), str(fields.get("outcome")))
        self.transfers.labels(*labels).inc()
        self.transfer_bytes.labels(*labels).inc(int(fields.get("bytes") or 0))

    def _tls(self, fields: dict[str, Any], result: str) -> None:
        self.tls.labels(str(fields.get("side")), str(fields.get("channel")), result).inc()


def serve_metrics(reactor: Any, metrics: Metrics, address: Address) -> IListeningPort:
    """Serve ``/metrics`` (any path, in fact) in Prometheus' text format on ``address``."""
    site = Site(MetricsResource(registry=metrics.registry))
    site.noisy = False
    port: IListeningPort = reactor.listenTCP(address[1], site, interface=address[0])
    return port
