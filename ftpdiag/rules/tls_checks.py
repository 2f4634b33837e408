"""Checks for FTPS (RFC 4217): handshakes, trust, data-channel protection and resumption.

Like ``checks.py``, each function only decides which rule of ``diagnoses.toml`` fires and with
what evidence; the glue reports handshakes as ``tls.established``/``tls.failed`` facts with a
short ``reason`` it derived from OpenSSL's own words (``detail``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ftpdiag.rules.finding import Check, Finding, handles
from ftpdiag.rules.view import SessionView

_CERTIFICATE = re.compile(
    r"certificate (expired|not yet valid|verification)|self-signed|certificate authority"
    r"|wrong host name|wrong ip address",
    re.I,
)
_REUSE = re.compile(r"reuse|resum", re.I)


def _control_failure(f: dict[str, Any]) -> Finding:
    reason, side = str(f.get("reason") or ""), f.get("side")
    ev = {k: f.get(k) for k in ("side", "channel", "reason", "detail")}
    if side == "server" and _CERTIFICATE.search(reason):
        return Finding("tls.verify_failed", None, ev)
    if side == "client" and "does not trust" in reason:
        return Finding("tls.client_distrusts_proxy", None, ev)
    if "version" in reason.lower():
        return Finding("tls.version_mismatch", None, ev)
    if "does not speak TLS" in reason:
        return Finding("tls.not_tls", None, ev)
    return Finding("tls.handshake_failed", None, ev)


@handles("tls.failed", "tls.upstream_refused", "tls.blind")
def handshakes(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 4217 §4 and §7: the TLS negotiation on the control and data connections."""
    if event == "tls.failed" and f.get("channel") == "data":
        ev = {k: f.get(k) for k in ("side", "pipe", "reason", "detail", "prot_p")}
        if f.get("side") == "server":
            yield Finding("tls.data_failed_server", None, ev)
        else:
            yield Finding("tls.data_failed_client", None, ev)
    elif event == "tls.failed":
        yield _control_failure(f)
    elif event == "tls.upstream_refused":
        yield Finding("tls.upstream_refused", f.get("code"), dict(f))
    elif event == "tls.blind":
        yield Finding("tls.blind", None, dict(f))


@handles("tls.established")
def data_resumption(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 4217 §10 (and vsftpd's require_ssl_reuse): a data connection should resume the
    control connection's TLS session. Through ftpdiag it works anyway, because the proxy
    resumes its own session toward the server; straight to such a server it fails. Said once."""
    if (
        event == "tls.established"
        and f.get("side") == "client"
        and f.get("channel") == "data"
        and f.get("resumed") is False
        and not view.client_resumption_told
    ):
        view.client_resumption_told = True
        yield Finding(
            "tls.client_no_resume", None, {"pipe": f.get("pipe"), "version": f.get("version")}
        )


@handles("transfer.end")
def unclean_close(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 4217 §12.6 (via RFC 5246 §7.2.1): a protected data connection ends with a TLS
    close_notify; without it an end of data cannot be told from a truncation, and clients that
    check fail the transfer although the server answered 226."""
    if (
        event == "transfer.end"
        and int(f["pipe"]) in view.tls_data_pipes
        and isinstance(f.get("outcome"), int)
        and f["outcome"] // 100 == 2
        and f.get("first_closed") == "server"
        and f.get("server_end") == "reset"
    ):
        yield Finding(
            "tls.unclean_close",
            f["outcome"],
            {
                "code": f["outcome"],
                **{k: f.get(k) for k in ("command", "path", "bytes", "client_end", "server_end")},
            },
        )


@handles("reply")
def tls_replies(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """Replies that speak of TLS: AUTH unsupported (RFC 2228 §4), session reuse required."""
    if event != "reply":
        return
    code, command, text = f["code"], f.get("command"), str(f.get("text") or "")
    evidence = {"code": code, "text": text, "command": command}
    if command == "AUTH" and code in (500, 502, 504):
        yield Finding("tls.auth_unsupported", code, evidence)
    elif code in (425, 450, 522, 534) and _REUSE.search(text):
        yield Finding("tls.resumption_required", code, evidence)


TLS_CHECKS: tuple[Check, ...] = (handshakes, data_resumption, unclean_close, tls_replies)
