"""Session checks: small pure functions ``(event, fields, view) -> findings``.

Each check decides whether one rule of ``diagnoses.toml`` fires and with what evidence; the
prose lives in the data file and the catalog. A reply for which no specific check fires still
gets a diagnosis from the catalog when it matters (the greeting, 4xx, 5xx, 6xx).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ftpdiag.core.addresses import is_unroutable
from ftpdiag.rules.sequences import allowed_replies
from ftpdiag.rules.view import SessionView

SLOW_REPLY_MS = 2000.0
BINARY_SUFFIXES = frozenset(
    ".zip .gz .tgz .bz2 .xz .7z .rar .tar .iso .img .bin .exe .dll .so .jpg .jpeg .png .gif "
    ".pdf .mp3 .mp4 .mkv .avi .mov .docx .xlsx .pptx .jar .class .pyc .whl .deb .rpm".split()
)
_TLS_WORDS = re.compile(r"ssl|tls|encrypt|secure|policy", re.I)
_TOO_MANY = re.compile(r"too many|maximum|limit|per ip|connections from", re.I)
_PERMISSION = re.compile(r"permission|denied|not allowed|forbidden|access", re.I)
_NOT_FOUND = re.compile(r"no such|not found|not exist|doesn't exist|does not exist|cannot find", re.I)


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, the reply code it concerns, and what it saw."""

    rule: str
    code: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


Check = Callable[[str, dict[str, Any], SessionView], Iterable[Finding]]


def _reply_evidence(f: dict[str, Any]) -> dict[str, Any]:
    return {"code": f["code"], "text": f.get("text", ""), "command": f.get("command"),
            "latency_ms": f.get("latency_ms")}


def greeting(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §5.4 "Connection Establishment": 120, 220, 421 are the only greetings."""
    if event != "reply" or "greeting" not in (f.get("state") or ()):
        return
    ev = _reply_evidence(f)
    if f["code"] == 220:
        yield Finding("greeting.delayed" if view.greeting_preliminary else "greeting.ready", 220, ev)
    elif f["code"] == 120:
        yield Finding("greeting.wait", 120, ev)
    elif f["code"] == 421:
        rule = "greeting.too_many" if _TOO_MANY.search(ev["text"]) else "greeting.refused"
        yield Finding(rule, 421, ev)


def login(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.1.1: 230 ends a login, 530 refuses it; RFC 4217 §4: policy may demand TLS."""
    if event != "reply" or "greeting" in (f.get("state") or ()):
        return
    code, command, text = f["code"], f.get("command"), str(f.get("text") or "")
    ev = _reply_evidence(f)
    if code in (230, 232) and command in ("PASS", "USER", "ACCT"):
        yield Finding("login.ok", code, ev)
    elif code in (530, 421) and _TOO_MANY.search(text):
        yield Finding("login.too_many", code, ev)
    elif code in (530, 534, 550, 522) and _TLS_WORDS.search(text) and command in ("USER", "PASS", "PROT", "LIST", "RETR", "STOR", "NLST", "MLSD"):
        yield Finding("tls.required", code, ev)
    elif code == 530 and command == "PASS":
        user = str(view.last_user or "").lower()
        rule = "login.anonymous_refused" if user in ("anonymous", "ftp") else "login.failed"
        yield Finding(rule, 530, {**ev, "user": view.last_user})
    elif code == 530 and command == "USER" and str(f.get("arg") or "").lower() in ("anonymous", "ftp"):
        yield Finding("login.anonymous_refused", 530, {**ev, "user": f.get("arg")})


def passive_address(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.1.2 PASV: the server must answer with an address the client can reach."""
    if event != "data.passive" or f.get("code") != 227:
        return
    host = str(f["advertised"]).rsplit(":", 1)[0]
    peer = str(f["control_peer"])
    if host != peer or (is_unroutable(host) and not is_unroutable(peer)):
        view.nat_pipes.add(int(f["pipe"]))
        yield Finding("pasv.nat_mismatch", 227, {
            "advertised": f["advertised"], "control_peer": peer, "dialled": f["dialled"],
        })


def data_failures(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """The data connection never came: which side, which mode, refused or timed out."""
    if event != "data.failed":
        return
    side, kind = f["side"], f["kind"]
    ev = {"side": side, "kind": kind, "detail": f.get("detail"),
          "client_mode": f.get("client_mode"), "server_mode": f.get("server_mode")}
    if side == "server" and f.get("server_mode") == "passive":
        yield Finding("pasv.unreachable", 425, ev)
    elif side == "server":
        yield Finding("active.server_never_connected", 425, ev)
    elif f.get("client_mode") == "passive":
        yield Finding("data.client_never_connected", 425, ev)
    else:
        yield Finding("active.client_unreachable", 425, ev)


def data_setup_replies(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """EPSV/EPRT refused (RFC 2428 §4/§5 fallback), 425 after PORT/EPRT, 500/501 illegal PORT."""
    if event != "reply":
        return
    code, command = f["code"], f.get("command")
    ev = _reply_evidence(f)
    if command in ("EPSV", "EPRT") and code in (500, 501, 502, 522):
        yield Finding("epsv.refused" if command == "EPSV" else "eprt.refused", code, ev)
    elif command in ("PORT", "EPRT") and code in (500, 501):
        yield Finding("active.port_refused", code, ev)
    elif code == 425:
        mode = "active" if "active" in (f.get("state") or ()) else "passive"
        yield Finding(f"data.cannot_open_{mode}", 425, ev)


def security(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 2577 §3 (bounce) and §7 (port stealing): refused by the proxy."""
    if event == "security.bounce_refused":
        yield Finding("security.bounce", 500, dict(f))
    elif event == "security.data_theft_refused":
        yield Finding("security.data_theft", None, dict(f))


def transfers(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """How each transfer ended: aborted (426), truncated, local errors, wrong TYPE."""
    if event == "transfer.start":
        suffix = posixpath.splitext(str(f.get("path") or "").lower())[1]
        if f.get("type") == "A" and f.get("command") in ("RETR", "STOR", "APPE") and suffix in BINARY_SUFFIXES:
            yield Finding("transfer.ascii_binary", None, {"path": f.get("path"), "command": f["command"]})
        return
    if event == "transfer.no_completion":
        yield Finding("transfer.no_completion", None, dict(f))
        return
    if event != "transfer.end":
        return
    outcome, moved = f["outcome"], f["bytes"]
    size = view.size_of(int(f["pipe"])) if f["direction"] == "download" else None
    expected = size - int(f.get("rest") or 0) if size is not None else None
    pct = round(100 * moved / expected, 1) if expected else None
    ev = {"command": f["command"], "path": f["path"], "bytes": moved, "expected": expected,
          "percent": pct, "client_end": f["client_end"], "server_end": f["server_end"],
          "aborted_by": f.get("aborted_by"), "resume_at": moved + int(f.get("rest") or 0)}
    if outcome == 426:
        if f.get("aborted_by") == "client":
            cause = "the client sent ABOR"
        elif f["server_end"] == "reset":
            cause = "the server's data connection was reset (RST)"
        elif f["client_end"] in ("reset",):
            cause = "the client's data connection was reset"
        elif f["server_end"] == "eof" and expected is not None and moved < expected:
            cause = "the server closed the data connection early (premature EOF)"
        else:
            cause = "the server side closed the data connection"
        yield Finding("transfer.aborted", 426, {**ev, "cause": cause}, {"state": ["transfer"] + (["abort"] if f.get("aborted_by") else [])})
    elif isinstance(outcome, int) and outcome // 100 == 2 and expected is not None and moved != expected:
        yield Finding("transfer.truncated", outcome, ev)
    elif outcome in ("closed", "reset", "timeout") and moved:
        yield Finding("transfer.interrupted", None, {**ev, "outcome": outcome})
    elif outcome in (451, 452, 552) and f["direction"] == "upload":
        yield Finding("transfer.storage", outcome, ev, {"command": f["command"]})


def file_errors(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """550/553 on file commands: permission versus not found (RFC 959 §4.2 leaves it to text)."""
    if event != "reply" or f["code"] not in (550, 553):
        return
    command, text = f.get("command"), str(f.get("text") or "")
    if command not in ("RETR", "STOR", "APPE", "STOU", "CWD", "CDUP", "DELE", "MKD", "RMD", "RNFR", "RNTO", "SIZE", "MDTM", "LIST", "NLST", "MLSD", "MLST"):
        return
    ev = {**_reply_evidence(f), "path": f.get("arg")}
    if _PERMISSION.search(text):
        yield Finding("file.permission", f["code"], ev)
    elif _NOT_FOUND.search(text):
        yield Finding("file.not_found", f["code"], ev)


def protocol(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.2 and §5.4: reply syntax, multi-line framing and the command–reply table."""
    if event == "reply":
        if f.get("unsolicited"):
            yield Finding("protocol.unsolicited", f["code"], _reply_evidence(f))
        elif f.get("mismatched_codes"):
            yield Finding("protocol.multiline_mismatch", f["code"], {**_reply_evidence(f), "inner": f["mismatched_codes"]})
        command = f.get("command")
        allowed = allowed_replies(command) if command else None
        if allowed is not None and f["code"] not in allowed and f["code"] not in (421, 500, 501, 502, 530):
            yield Finding("protocol.unexpected_reply", f["code"], {**_reply_evidence(f), "allowed": sorted(allowed)})
        latency = f.get("latency_ms")
        if latency is not None and latency > SLOW_REPLY_MS and "greeting" not in (f.get("state") or ()):
            yield Finding("performance.slow_reply", None, _reply_evidence(f))
    elif event == "protocol.bad_address" and f.get("side") == "server":
        yield Finding("protocol.malformed_pasv", f.get("code"), dict(f))
    elif event == "protocol.bad_address":
        yield Finding("protocol.malformed_port", 501, dict(f))
    elif event in ("protocol.malformed_reply", "protocol.line_too_long", "protocol.reply_too_long"):
        yield Finding(event, None, dict(f))


def timing(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """Silences: no greeting, idle timeouts, stalled transfers."""
    if event == "greeting.timeout":
        yield Finding("greeting.missing", None, dict(f))
    elif event == "reply" and f["code"] == 421 and "logged_in" in (f.get("state") or ()) and "greeting" not in (f.get("state") or ()):
        rule = "transfer.server_gave_up" if "transfer" in (f.get("state") or ()) else "control.idle_timeout"
        yield Finding(rule, 421, {**_reply_evidence(f), "idle_ms": f.get("idle_ms")})
    elif event == "transfer.progress":
        pipe = int(f["pipe"])
        if view.progress.get(pipe) == f["bytes"] and pipe not in view.stalled:
            view.stalled.add(pipe)
            yield Finding("transfer.stalled", None, {"path": f.get("path"), "bytes": f["bytes"], "elapsed_ms": f.get("elapsed_ms")})


def upstream(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """The proxy could not reach the server at all."""
    if event == "upstream.failed":
        yield Finding(f"upstream.{f['kind']}", 421, dict(f))
    elif event == "control.closed" and f.get("side") == "server" and f.get("transfer_open"):
        yield Finding("control.dropped_during_transfer", None, dict(f))


def catalog_fallback(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """Any greeting, 4xx, 5xx or 6xx reply deserves its catalog explanation."""
    if event == "reply" and (f["code"] >= 400 or "greeting" in (f.get("state") or ())):
        yield Finding("reply.explained", f["code"], _reply_evidence(f))


CHECKS: tuple[Check, ...] = (
    greeting, login, passive_address, data_failures, data_setup_replies, security, transfers,
    file_errors, protocol, timing, upstream,
)
FALLBACK: Check = catalog_fallback
