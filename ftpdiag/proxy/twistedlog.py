"""Twisted's own log, taken over once per process.

Until a program chooses where Twisted logs, Twisted keeps its last 65,536 log events in
memory; each event of a port or factory holds that object, so a busy proxy would keep the
data pipes of thousands of finished transfers alive (the factories of the proxy are quiet
for this reason too). Twisted's chatter ("starting on port", "Port closed") is dropped;
what it reports as a failure or an error is a bug of the proxy's glue and is logged as
``proxy.internal_error``, like any other.
"""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogBeginner
from zope.interface import implementer

from ftpdiag.logconfig import emit
from ftpdiag.proxy.internal import describe

_taken = False


@implementer(ILogObserver)
class _Observer:
    def __call__(self, event: LogEvent) -> None:
        failure = event.get("log_failure")
        if failure is None and event.get("log_level") not in (LogLevel.error, LogLevel.critical):
            return
        namespace = str(event.get("log_namespace", "?"))
        if failure is None or not isinstance(failure.value, BaseException):
            emit("proxy.internal_error", {"error": "error", "message": "", "where": namespace})
            return
        emit("proxy.internal_error", describe(failure.value, failure.getTracebackObject()))


def take_over_twisted_log() -> None:
    """Route Twisted's log (once; later calls do nothing)."""
    global _taken
    if _taken:
        return
    _taken = True
    globalLogBeginner.beginLoggingTo([_Observer()], discardBuffer=True, redirectStandardIO=False)
