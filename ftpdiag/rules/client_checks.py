"""Checks for facts only an imported client log has: the client's own errors (``client.error``)
and a log that does not show the whole session (``log.partial``).

A client that cannot connect, times out or fails its TLS handshake often leaves no reply to
explain it: the error text is the only evidence. Errors a server reply already explains (a
``530``, a ``550``: kinds ``login`` and ``not_found``), and unclassified errors that follow a
problem already diagnosed (the client's summary of it), get no diagnosis of their own (the
outcome model fails the download of a refused SIZE the client quits on, as live).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ftpdiag.rules.finding import Check, Finding, handles
from ftpdiag.rules.view import SessionView

_EXPLAINED_BY_A_REPLY = frozenset({"login", "not_found"})


@handles("client.error", "client.notice", "log.partial")
def client_errors(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """The client's errors by kind; on the data channel, the PASV/PORT address it dialled.
    RFC 959 §4.1.2: the PASV reply's address is where the data connection goes; a client that
    had to replace it shows a server advertising an address it does not have (NAT)."""
    if event == "client.notice":
        if f.get("kind") == "pasv_address":
            yield Finding(
                "pasv.address_replaced", 227, {k: f.get(k) for k in ("message", "source")}
            )
        return
    if event == "log.partial":
        unseen = set(f.get("unseen") or ())
        part = "both" if {"start", "end"} <= unseen else "start" if "start" in unseen else "end"
        yield Finding("log.partial", None, {"unseen": part, "awaiting": f.get("awaiting")})
        return
    kind = str(f.get("kind") or "error")
    if event != "client.error":
        return
    if kind in _EXPLAINED_BY_A_REPLY or (kind == "error" and view.diagnoses):
        return  # the client's summary of a refusal the server explained (530, 550)
    ev = {k: f.get(k) for k in ("kind", "message", "source", "channel", "mode", "awaiting")}
    if f.get("channel") == "data":
        if f.get("mode") == "active":
            yield Finding("client.data_active_failed", 425, ev, {"state": ["active"]})
        else:
            yield Finding("client.data_failed", 425, ev, {"state": ["passive"]})
    elif kind == "refused":
        yield Finding("client.refused", None, ev)
    elif kind == "timeout" and f.get("awaiting"):
        yield Finding("client.reply_timeout", None, ev)
    elif kind == "timeout":
        yield Finding("client.timeout", None, ev)
    elif kind == "dns":
        yield Finding("client.dns", None, ev)
    elif kind == "tls":
        yield Finding("client.tls", None, ev)
    elif kind in ("reset", "closed"):
        yield Finding("client.connection_lost", None, ev)
    elif kind == "unreachable":
        yield Finding("client.unreachable", None, ev)
    else:
        yield Finding("client.error", None, ev)


CLIENT_CHECKS: tuple[Check, ...] = (client_errors,)
