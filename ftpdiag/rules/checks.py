"""Session checks: small pure functions ``(event, fields, view) -> findings``.

Each check decides whether one rule of ``diagnoses.toml`` fires and with what evidence; the
prose lives in the data file and the catalog. A reply for which no specific check fires still
gets a diagnosis from the catalog when it matters (the greeting, 4xx, 5xx, 6xx).

Every rule id a check can produce is spelled out as a literal ``Finding("rule.id", ...)`` so
that the tests can find them all in this file and match them against ``diagnoses.toml``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from ftpdiag.core.addresses import is_unroutable
from ftpdiag.core.transfers import TRANSFER_VERBS, UPLOAD_VERBS
from ftpdiag.rules.client_checks import CLIENT_CHECKS
from ftpdiag.rules.finding import Check, Finding, handles
from ftpdiag.rules.sequences import allowed_replies
from ftpdiag.rules.server_messages import SERVER_MESSAGE_CHECKS
from ftpdiag.rules.tls_checks import TLS_CHECKS
from ftpdiag.rules.view import SessionView

SLOW_REPLY_MS = 2000.0
"""Default threshold of ``performance.slow_reply`` (``Diagnoser(slow_reply_ms=...)``)."""

BINARY_SUFFIXES = frozenset({
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".iso", ".img", ".bin", ".exe",
    ".dll", ".so", ".jpg", ".jpeg", ".png", ".gif", ".pdf", ".mp3", ".mp4", ".mkv", ".avi", ".mov",
    ".docx", ".xlsx", ".pptx", ".jar", ".class", ".pyc", ".whl", ".deb", ".rpm",
})  # fmt: skip
FILE_VERBS = frozenset(
    {
        "RETR",
        "STOR",
        "APPE",
        "STOU",
        "CWD",
        "CDUP",
        "DELE",
        "MKD",
        "RMD",
        "RNFR",
        "RNTO",
        "SIZE",
        "MDTM",
        "LIST",
        "NLST",
        "MLSD",
        "MLST",
    }
)
# Replies every command may get in practice, whatever RFC 959 §5.4 lists for it.
ALWAYS_ALLOWED = frozenset({421, 500, 501, 502, 530})
# De-facto replies outside the RFC 959 table that (nearly) every server sends: 550 to STOR
# for "permission denied" (pyftpdlib, ProFTPD, IIS). Not worth a protocol warning.
DE_FACTO_ALLOWED: dict[str, frozenset[int]] = {
    "STOR": frozenset({550}),
    "STOU": frozenset({550}),
}
_TLS_WORDS = re.compile(r"ssl|tls|encrypt|secure|policy", re.I)
_TOO_MANY = re.compile(r"too many|maximum|limit|per ip|connections from", re.I)
_PERMISSION = re.compile(
    r"permission|denied|not allowed|forbidden|access|privilege|read-only|read only|not owner", re.I
)
_NOT_FOUND = re.compile(
    r"no such|not found|not exist|doesn't exist|does not exist|cannot find", re.I
)
CONTROL_VERBS = frozenset({"USER", "PASS", "ACCT", "AUTH"})
TLS_COMMANDS = frozenset({
    *CONTROL_VERBS, "PROT", "PASV", "EPSV", "PORT", "EPRT", "LIST", "NLST", "MLSD", "RETR", "STOR",
    "STOU", "APPE",
})  # fmt: skip


def _state(f: dict[str, Any]) -> frozenset[str]:
    return frozenset(f.get("state") or ())


def upstream_command(f: dict[str, Any]) -> str | None:
    """The verb the server answered: the proxy reports it when it translated the client's
    (PASV for PORT, or the ``auto`` fallback); a record without it (no proxy in between)
    answers the client's own command."""
    return f.get("upstream_command") or f.get("command")


def _reply_evidence(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": f["code"],
        "text": f.get("text", ""),
        "command": f.get("command"),
        "latency_ms": f.get("latency_ms"),
    }


@handles("reply")
def greeting(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §5.4 "Connection Establishment": 120, 220, 421 are the only greetings."""
    if event != "reply" or "greeting" not in _state(f):
        return
    ev = _reply_evidence(f)
    if f["code"] == 220:
        if view.greeting_preliminary:
            yield Finding("greeting.delayed", 220, ev)
        else:
            yield Finding("greeting.ready", 220, ev)
    elif f["code"] == 120:
        yield Finding("greeting.wait", 120, ev)
    elif f["code"] == 421:
        if _TOO_MANY.search(ev["text"]):
            yield Finding("greeting.too_many", 421, ev)
        else:
            yield Finding("greeting.refused", 421, ev)


@handles("reply")
def login(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.1.1: 230 ends a login, 530 refuses it; RFC 4217 §4: policy may demand TLS."""
    if event != "reply" or "greeting" in _state(f):
        return
    code, command, text = f["code"], f.get("command"), str(f.get("text") or "")
    ev = _reply_evidence(f)
    if code in (230, 232) and command in ("PASS", "USER", "ACCT"):
        yield Finding("login.ok", code, ev)
    elif code in (530, 421) and _TOO_MANY.search(text):
        yield Finding("login.too_many", code, ev)
    elif code in (530, 534, 550, 522) and _TLS_WORDS.search(text) and command in TLS_COMMANDS:
        channel = "control" if command in CONTROL_VERBS else "data"
        yield Finding("tls.required", code, {**ev, "channel": channel})
    elif code == 530 and command == "PASS":
        user = str(view.last_user or "")
        if user.lower() in ("anonymous", "ftp"):
            yield Finding("login.anonymous_refused", 530, {**ev, "user": user})
        else:
            yield Finding("login.failed", 530, {**ev, "user": user})
    elif (
        code == 530
        and command == "USER"
        and str(f.get("arg") or "").lower() in ("anonymous", "ftp")
    ):
        yield Finding("login.anonymous_refused", 530, {**ev, "user": f.get("arg")})


@handles("data.passive")
def passive_address(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.1.2 PASV: the server must answer with an address the client can reach."""
    if event != "data.passive" or f.get("code") != 227:
        return
    host = str(f["advertised"]).rsplit(":", 1)[0]
    peer = str(f["control_peer"])
    if host != peer or (is_unroutable(host) and not is_unroutable(peer)):
        yield Finding(
            "pasv.nat_mismatch",
            227,
            {
                "advertised": f["advertised"],
                "control_peer": peer,
                "dialled": f["dialled"],
            },
        )


@handles("data.failed")
def data_failures(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """The data connection never came: which side, which mode, refused or timed out."""
    if event != "data.failed":
        return
    side, kind = f["side"], f["kind"]
    ev = {
        "side": side,
        "kind": kind,
        "detail": f.get("detail"),
        "client_mode": f.get("client_mode"),
        "server_mode": f.get("server_mode"),
    }
    if kind == "stall":
        yield Finding("transfer.stall_timeout", None, ev)
    elif side == "server" and f.get("server_mode") == "passive":
        yield Finding("pasv.unreachable", 425, ev, {"state": ["passive"]})
    elif side == "server":
        yield Finding("active.server_never_connected", 425, ev, {"state": ["active"]})
    elif f.get("client_mode") == "passive":
        yield Finding("data.client_never_connected", 425, ev, {"state": ["passive"]})
    else:
        yield Finding("active.client_unreachable", 425, ev, {"state": ["active"]})


@handles("reply")
def data_setup_replies(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """EPSV/EPRT refused (RFC 2428 §4/§5 fallback), 425 after PORT/EPRT, 500/501 to PORT."""
    if event != "reply":
        return
    code, command = f["code"], upstream_command(f)
    ev = {**_reply_evidence(f), "command": command}
    if command == "EPSV" and code in (500, 501, 502, 522):
        yield Finding("epsv.refused", code, ev)
    elif command == "EPRT" and code in (500, 501, 502, 522):
        yield Finding("eprt.refused", code, ev)
    elif command == "PORT" and code in (500, 501):
        yield Finding("active.port_refused", code, ev)
    elif code == 425 and "active" in _state(f):
        yield Finding("data.cannot_open_active", 425, ev)
    elif code == 425:
        yield Finding("data.cannot_open_passive", 425, ev)


@handles("security.bounce_refused", "security.bounce", "security.data_theft_refused")
def security(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 2577 §3 (bounce) and §7 (port stealing): refused by the proxy, or (a capture)
    seen on the way to the server."""
    if event == "security.bounce_refused":
        yield Finding("security.bounce", 500, dict(f))
    elif event == "security.bounce":
        yield Finding("security.bounce_attempt", None, dict(f))
    elif event == "security.data_theft_refused":
        yield Finding("security.data_theft", None, {k: v for k, v in f.items() if k != "pipe"})


def _client_stopped(f: dict[str, Any], rest: int) -> str | None:
    """Whether the client ended a download on purpose, and how: it sent ABOR, or it closed its
    end of the data connection first, as a multi-connection downloader (lftp pget, aria2)
    does once a segment started with REST has the bytes it wanted."""
    if f.get("aborted_by") == "client":
        return "client_abort"
    if f.get("direction") != "download" or f.get("first_closed") != "client" or not f["bytes"]:
        return None  # a client that got nothing at all stopped nothing
    if f.get("client_end") in ("eof", "closed") or (rest and f.get("client_end") == "reset"):
        return "client_closed"
    return None


def _abort_cause(f: dict[str, Any], moved: int, expected: int | None) -> str:
    """Why a transfer ended with 426, from how each end of the data connection finished."""
    if f["server_end"] == "reset":
        return "server_reset"
    if f["client_end"] == "reset":
        return "client_reset"
    if f["client_end"] == "never":
        return "client_never_connected"
    if f["server_end"] == "eof" and expected is not None and moved < expected:
        return "premature_eof"
    if f["server_end"] == "eof":
        return "server_closed"
    return "server_reply"


@handles("transfer.start", "transfer.no_completion", "reply", "transfer.end")
def transfers(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """How each transfer ended: aborted (426), truncated, interrupted, storage errors, TYPE A."""
    if event == "transfer.start":
        suffix = posixpath.splitext(str(f.get("path") or "").lower())[1]
        if (
            view.effective(f)[1] == "A"  # the TYPE the server accepted, not the one asked for
            and f.get("command") in ("RETR", *UPLOAD_VERBS)
            and suffix in BINARY_SUFFIXES
        ):
            yield Finding(
                "transfer.ascii_binary", None, {"path": f.get("path"), "command": f["command"]}
            )
        return
    if event == "transfer.no_completion":
        yield Finding(
            "transfer.no_completion",
            None,
            {
                "command": f.get("command"),
                "path": f.get("path"),
                "bytes": f.get("bytes"),
                "waited_s": f.get("waited_s"),
            },
        )
        return
    if event == "reply" and f["code"] in (451, 452, 552) and f.get("command") in UPLOAD_VERBS:
        yield Finding("transfer.storage", f["code"], {**_reply_evidence(f), "path": f.get("arg")})
        return
    if event != "transfer.end":
        return
    pipe, outcome, moved = int(f["pipe"]), f["outcome"], int(f["bytes"])
    rest, type_ = view.settings_of(f)  # a refused REST or TYPE changed nothing
    expected = view.expected_bytes(pipe, rest, moved) if f["direction"] == "download" else None
    pct = round(100 * moved / expected, 1) if expected else None
    ev = {
        "command": f["command"],
        "path": f["path"],
        "bytes": moved,
        "expected": expected,
        "percent": pct,
        "client_end": f["client_end"],
        "server_end": f["server_end"],
        "aborted_by": f.get("aborted_by"),
        "resume_at": moved + rest,
    }
    # A client that hangs up on a stalled transfer gave up because of the stall (already
    # diagnosed), not on purpose.
    stopped = None if pipe in view.stalled else _client_stopped(f, rest)
    if stopped is not None and not (
        isinstance(outcome, int) and outcome // 100 == 2 and moved == expected
    ):
        code = outcome if isinstance(outcome, int) else None
        yield Finding("transfer.client_stopped", code, {**ev, "cause": stopped, "code": code})
    elif outcome == 426:
        cause = _abort_cause(f, moved, expected)
        yield Finding("transfer.aborted", 426, {**ev, "cause": cause}, {"state": ["transfer"]})
    elif (
        isinstance(outcome, int)
        and outcome // 100 == 2
        and expected is not None
        and moved != expected
        and type_ != "A"  # TYPE A rewrites line ends: sizes differ legitimately
        # A data connection whose end nobody saw (a capture without it, or that lost its
        # last packets) gives no total to compare.
        and f["server_end"] not in ("unseen", "open")
    ):
        yield Finding("transfer.truncated", outcome, ev)
    elif (
        outcome in ("closed", "reset", "timeout")
        and moved
        # Already told: the final reply never came, the control connection dropped, or the
        # transfer stalled (the stall, not the hang-up that followed, is the root cause).
        and pipe not in view.no_completion
        and pipe not in view.stalled
        and not view.control_dropped
    ):
        yield Finding("transfer.interrupted", None, {**ev, "outcome": outcome})


@handles("reply")
def file_errors(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """550/553 on file commands: permission versus not found (RFC 959 §4.2 leaves it to text)."""
    if event != "reply" or f["code"] not in (550, 553) or f.get("command") not in FILE_VERBS:
        return
    text = str(f.get("text") or "")
    ev = {**_reply_evidence(f), "path": f.get("arg")}
    if _PERMISSION.search(text):
        yield Finding("file.permission", f["code"], ev)
    elif _NOT_FOUND.search(text):
        yield Finding("file.not_found", f["code"], ev)


@handles(
    "reply",
    "protocol.bad_address",
    "protocol.malformed_reply",
    "protocol.line_too_long",
    "protocol.reply_too_long",
)
def protocol(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """RFC 959 §4.2 and §5.4: reply syntax, multi-line framing and the command–reply table."""
    if event == "reply":
        code, command = f["code"], upstream_command(f)
        # 421 may come at any time: the server is closing the connection (RFC 959 §4.2).
        if f.get("unsolicited") and code != 421:
            yield Finding("protocol.unsolicited", code, _reply_evidence(f))
        if f.get("mismatched_codes"):
            yield Finding(
                "protocol.multiline_mismatch",
                code,
                {**_reply_evidence(f), "inner": list(f["mismatched_codes"])},
            )
        allowed = allowed_replies(command) if command else None
        tolerated = ALWAYS_ALLOWED | DE_FACTO_ALLOWED.get(str(command), frozenset())
        if allowed is not None and code not in allowed and code not in tolerated:
            yield Finding(
                "protocol.unexpected_reply",
                code,
                {**_reply_evidence(f), "command": command, "allowed": sorted(allowed)},
            )
        latency = f.get("latency_ms")
        # The final reply of a transfer comes after the data: its latency is the transfer's.
        transfer_final = command in TRANSFER_VERBS and code >= 200
        if (
            latency is not None
            and latency > view.slow_reply_ms
            and not transfer_final
            and "greeting" not in _state(f)
        ):
            yield Finding(
                "performance.slow_reply",
                None,
                {**_reply_evidence(f), "threshold_ms": view.slow_reply_ms},
            )
    elif event == "protocol.bad_address" and f.get("side") == "server":
        yield Finding("protocol.malformed_pasv", f.get("code"), dict(f))
    elif event == "protocol.bad_address":
        yield Finding("protocol.malformed_port", 501, dict(f))
    elif event == "protocol.malformed_reply":
        yield Finding("protocol.malformed_reply", None, dict(f))
    elif event == "protocol.line_too_long":
        yield Finding("protocol.line_too_long", None, dict(f))
    elif event == "protocol.reply_too_long":
        yield Finding("protocol.reply_too_long", None, dict(f))


@handles("greeting.timeout", "control.server_silent", "reply", "transfer.progress")
def timing(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """Silences: no greeting, idle timeouts, stalled transfers."""
    if event == "greeting.timeout" and not view.peer_identified:
        yield Finding("greeting.missing", None, dict(f))
    elif event == "control.server_silent":
        yield Finding("control.server_silent", None, dict(f))
    elif (
        event == "reply"
        and f["code"] == 421
        and "logged_in" in _state(f)
        and "greeting" not in _state(f)
    ):
        ev = _reply_evidence(f)
        if f.get("idle_ms") is not None:
            ev["idle_ms"] = f["idle_ms"]
        # A 421 answering the transfer command ends that transfer even when its data
        # connection closed a moment before the reply was read.
        if "transfer" in _state(f) or f.get("command") in TRANSFER_VERBS:
            yield Finding("transfer.server_gave_up", 421, ev)
        else:
            yield Finding("control.idle_timeout", 421, ev)
    elif event == "transfer.progress":
        pipe = int(f["pipe"])
        if view.progress.get(pipe) == f["bytes"] and pipe not in view.stalled:
            yield Finding(
                "transfer.stalled",
                None,
                {
                    "command": f.get("command"),
                    "path": f.get("path"),
                    "bytes": f["bytes"],
                    "elapsed_ms": f.get("elapsed_ms"),
                },
            )


@handles("upstream.failed", "control.closed")
def upstream(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """The proxy could not reach the server at all, or lost it during a transfer."""
    if event == "upstream.failed":
        kind = f.get("kind")
        if kind == "refused":
            yield Finding("upstream.refused", 421, dict(f))
        elif kind == "timeout":
            yield Finding("upstream.timeout", 421, dict(f))
        elif kind == "dns":
            yield Finding("upstream.dns", 421, dict(f))
        elif kind == "unreachable":
            yield Finding("upstream.unreachable", 421, dict(f))
        else:
            yield Finding("upstream.error", 421, dict(f))
    elif (
        event == "control.closed"
        and f.get("side") == "server"
        and f.get("transfer_open")
        and f.get("awaiting")  # a server that answered first (421) has explained itself
    ):
        yield Finding("control.dropped_during_transfer", None, dict(f))


#: Probes that name a file: a refusal of one is a refusal of that file.
LOOKUP_VERBS = frozenset({"SIZE", "MDTM", "MLST"})
#: Commands that neither act on nor replace a pending lookup.
_BOOKKEEPING = frozenset({"QUIT", "NOOP", "TYPE", "PWD", "XPWD"})


@handles("reply", "command", "session.close")
def gave_up_after_lookup(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """A client that asks SIZE (or MDTM, MLST) of a file, is told it does not exist or may
    not be read (RFC 3659 §4.2, §5: 550), and then leaves without asking anything else (curl
    does so before RETR) failed to get that file: the refused probe is the failure."""
    if event == "reply":
        view.refused_lookup = None
        text = str(f.get("text") or "")
        if f.get("command") in LOOKUP_VERBS and f["code"] in (550, 553) and f.get("arg"):
            evidence = {**_reply_evidence(f), "path": f.get("arg"), "gave_up": True}
            permission = bool(_PERMISSION.search(text))
            view.refused_lookup = {"permission": permission, "evidence": evidence}
        return
    pending = view.refused_lookup
    if pending is None:
        return
    if event == "command" and f.get("verb") not in _BOOKKEEPING:
        view.refused_lookup = None  # it went on to something else
    elif event == "session.close" or (event == "command" and f.get("verb") == "QUIT"):
        view.refused_lookup = None
        evidence = pending["evidence"]
        if pending["permission"]:
            yield Finding("file.permission", evidence["code"], evidence)
        else:
            yield Finding("file.not_found", evidence["code"], evidence)


def refused_probe(f: dict[str, Any]) -> Finding:
    """RFC 959 §4.2: 500-504 to an optional command only says the server lacks a feature, and
    a refused probe or nicety (``outcomes.is_probe``) is one the client carries on without."""
    if f["code"] in (500, 502, 504):
        return Finding("command.unsupported", f["code"], _reply_evidence(f))
    return Finding("command.probe_refused", f["code"], _reply_evidence(f))


@handles("reply")
def catalog_fallback(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """Any greeting, 4xx, 5xx or 6xx reply deserves its catalog explanation, except a 426 that
    ends a transfer: ``transfer.aborted`` explains it once the data connection is down."""
    if event != "reply" or not (f["code"] >= 400 or "greeting" in _state(f)):
        return
    if f["code"] == 426 and f.get("command") in TRANSFER_VERBS and view.active_pipes:
        return
    yield Finding("reply.explained", f["code"], _reply_evidence(f))


CHECKS: tuple[Check, ...] = (
    *SERVER_MESSAGE_CHECKS,
    gave_up_after_lookup,
    greeting,
    login,
    passive_address,
    data_failures,
    data_setup_replies,
    security,
    transfers,
    file_errors,
    protocol,
    timing,
    upstream,
    *TLS_CHECKS,
    *CLIENT_CHECKS,
)
FALLBACK: Check = catalog_fallback
