"""The outcome model: what the user asked of the server, and what came of it.

A diagnosis tool is judged by whether it speaks up only when something went wrong. Replies
alone cannot tell: a ``530`` to ``OPTS UTF8 ON`` before the login, a ``502`` to a ``REST 1``
probe or a ``500`` to ``MLSD`` before the client falls back to ``LIST`` are refusals the client
shrugs off. So the engine keeps, beside the rules, a count of the *operations* the user asked
for (each login, listing, download, upload and file operation) and how each ended. The
session's summary says that first, and a root cause exists only when an operation failed or
the session ended abnormally.

Pure: it is fed the same facts as the rules (``command``, ``reply``, ``diagnosis``,
``session.close``), from whatever input they came. The knowledge (verbs, probes, words) is in
``outcomes.toml``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ftpdiag.i18n import word

KEPT = 100
"""How many failed operations a session keeps for its summary."""
_STATUS_OF_RULE = {
    # A 226 does not make a download good: it was short, or a binary file went in TYPE A.
    "transfer.truncated": "failed",
    "transfer.ascii_binary": "failed",
    "tls.unclean_close": "failed",  # the client's end was cut: strict clients report an error
    # A 426 does not make a download bad: the client stopped it on purpose.
    "transfer.client_stopped": "cancelled",
}
# A data connection that could not be made, whether or not the client went on to ask for the
# transfer it was for (ftplib gives up at once when its data connection is refused).
_FAILS_SETUP = frozenset(
    {
        "protocol.malformed_pasv",
        "pasv.unreachable",
        "active.server_never_connected",
        "active.client_unreachable",
        "data.client_never_connected",
    }
)


@dataclass(frozen=True, slots=True)
class Knowledge:
    """``outcomes.toml``, parsed."""

    kinds: Mapping[str, str]
    connection: frozenset[str]
    ignored: frozenset[str]
    continues: Mapping[str, str]
    intermediate: frozenset[int]
    probes: frozenset[str]
    fallback: frozenset[str]
    fallback_codes: frozenset[int]
    before_login_codes: frozenset[int]
    login_verbs: frozenset[str]
    abnormal: tuple[str, ...]
    unless_quit: frozenset[str]
    text: Mapping[str, Mapping[str, Any]]


@cache
def knowledge() -> Knowledge:
    """The outcome model's data file (validated by the tests)."""
    raw = tomllib.loads(
        resources.files("ftpdiag.rules").joinpath("outcomes.toml").read_text("utf-8")
    )
    probes = raw["probes"]
    return Knowledge(
        kinds=raw["kinds"],
        connection=frozenset(raw["silent"]["connection"]),
        ignored=frozenset(raw["silent"]["ignored"]),
        continues=raw["continues"],
        intermediate=frozenset(raw["intermediate"]["codes"]),
        probes=frozenset(probes["always"]),
        fallback=frozenset(probes["fallback"]),
        fallback_codes=frozenset(probes["fallback_codes"]),
        before_login_codes=frozenset(probes["before_login_codes"]),
        login_verbs=frozenset(probes["login_verbs"]),
        abnormal=tuple(raw["abnormal"]["reasons"]),
        unless_quit=frozenset(raw["abnormal"]["unless_quit"]),
        text=raw["text"],
    )


def is_probe(reply: Mapping[str, Any]) -> bool:
    """Whether a refusal answers a command the client recovers from: an optional command, a
    "not implemented" to a command with a classic fallback, or a nicety sent before the login.
    Such a refusal is an ``info`` note, never an error and never the root cause."""
    code, verb = int(reply.get("code") or 0), str(reply.get("command") or "")
    if code < 400 or not verb:
        return False
    k = knowledge()
    if verb in k.probes:
        return True
    if verb in k.fallback and code in k.fallback_codes:
        return True
    state = reply.get("state") or ()
    return (
        "before_login" in state
        and code in k.before_login_codes
        and verb not in k.login_verbs
        and verb not in k.kinds
    )


@dataclass(slots=True)
class Operation:
    """One thing the user asked for: its kind, the command that asked, and how it ended."""

    kind: str
    verb: str
    arg: str | None
    status: str = "open"  # open / ok / failed / cancelled
    code: int | None = None
    silent: bool = False  # counted only when it fails (a PASV, a raw command)


@dataclass
class Outcomes:
    """Operations of one session, in order (the open ones and the counts of the rest)."""

    open: list[Operation] = field(default_factory=list)
    recent: list[Operation] = field(default_factory=list)  # ended, the last few (for diagnoses)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failed_ops: list[dict[str, Any]] = field(default_factory=list)  # the first KEPT only
    quit_sent: bool = False
    abnormal: str | None = None
    trouble: bool = False  # a warning or an error was diagnosed
    doomed: bool = False  # refused at the greeting, or one end does not speak FTP at all
    attacked: bool = False  # a security rule fired

    def observe(self, event: str, fields: Mapping[str, Any]) -> None:
        """Follow one fact: commands open operations, final replies end them, a truncation
        diagnosis fails a download its 226 had passed, ``session.close`` ends what is open
        (failed, or given up when the client walked away from a trouble-free session)."""
        if event == "command":
            self._command(str(fields.get("verb") or ""), fields.get("arg"))
        elif event == "reply" or event == "proxy.reply":  # the proxy may answer for the server
            self._reply(fields)
        elif event == "diagnosis":
            self._diagnosis(fields)
        elif event == "session.close":
            self._close(str(fields.get("reason") or ""))

    def _command(self, verb: str, arg: Any) -> None:
        k = knowledge()
        if len(self.open) >= KEPT:  # commands nobody answers must not grow a session
            self.open.pop(0)
        if verb == "QUIT":
            self.quit_sent = True
        if verb in k.ignored or verb in k.continues:
            return
        kind = k.kinds.get(verb)
        if kind is None:
            silent_kind = "connection" if verb in k.connection else "command"
            self.open = [o for o in self.open if not (o.silent and o.verb == verb)]
            self.open.append(Operation(silent_kind, verb, None, silent=True))
            return
        if verb == "USER":  # a new USER replaces a login still waiting for its password
            for op in [o for o in self.open if o.verb == "USER"]:
                self._end(op, "failed", None)
        self.open.append(Operation(kind, verb, None if arg is None else str(arg)))

    def _find_open(self, verb: str) -> Operation | None:
        k = knowledge()
        starter = k.continues.get(verb, verb)
        return next((op for op in self.open if op.verb == starter), None)

    def _reply(self, f: Mapping[str, Any]) -> None:
        code, verb = int(f.get("code") or 0), str(f.get("command") or "")
        if code >= 400 and "greeting" in (f.get("state") or ()):
            self.doomed = True  # 421 instead of 220: whoever hangs up first, nothing can work
        op = self._find_open(verb) if verb else None
        if op is None or code < 200:
            return
        k = knowledge()
        if code in k.intermediate and verb not in k.continues:
            return  # 331 to USER, 350 to RNFR: the next command decides
        if op.silent and (code < 400 or is_probe(f)):
            self.open.remove(op)  # part of an operation, or a refusal the client shrugs off
        elif code < 400:
            self._end(op, "ok", code)
        elif "abort" in (f.get("state") or ()):
            self._end(op, "cancelled", code)  # the client sent ABOR: it stopped on purpose
        elif op.verb in k.fallback and code in k.fallback_codes:
            self.open.remove(op)  # MLSD not implemented: the client asks again with LIST
        else:
            self._end(op, "failed", code)

    def _diagnosis(self, d: Mapping[str, Any]) -> None:
        rule, evidence = d.get("rule"), d.get("evidence") or {}
        self.trouble = self.trouble or d.get("severity") in ("warning", "error")
        # A peer that is no FTP server, or a client that is no FTP client: however it ends,
        # the session could not have worked.
        self.doomed = self.doomed or str(rule).startswith(("peer.", "client."))
        # An attack (a bounce, a stolen data port) went wrong whatever the user got.
        self.attacked = self.attacked or (
            str(rule).startswith("security.") and d.get("severity") == "error"
        )
        if rule in _FAILS_SETUP:
            self._end(
                Operation("connection", str(evidence.get("command") or "PASV"), None),
                "failed",
                d.get("code"),
            )
            return
        if evidence.get("gave_up"):  # a refused SIZE the client quit on: its download failed
            self._end(Operation("download", "RETR", evidence.get("path")), "failed", d.get("code"))
            return
        status = _STATUS_OF_RULE.get(str(rule))
        if status is None:
            return
        for op in [*self.open, *reversed(self.recent)]:
            if op.verb != evidence.get("command") or op.arg != evidence.get("path"):
                continue
            if op.status == "open":
                self._end(op, status, op.code)
            elif op.status != status:
                self._count(op, -1)
                if op.status == "failed":
                    self.failed_ops = [f for f in self.failed_ops if f != self._record(op)]
                op.status = status
                self._count(op, +1)
                if status == "failed":
                    self._keep_failed(op)
            return

    def _close(self, reason: str) -> None:
        k = knowledge()
        if (
            self.doomed
            or reason.startswith(k.abnormal)
            or (reason in k.unless_quit and not self.quit_sent)
        ):
            self.abnormal = reason
        # A client that hangs up or QUITs with something open gave it up, unless trouble was
        # seen (a stall, a missing 226): then it gave up because of it.
        walked_away = (self.quit_sent or reason.startswith("client")) and not self.trouble
        for op in list(self.open):
            if op.silent:
                self.open.remove(op)  # a raw command left unanswered is not an operation
            else:  # one the client walked away from (QUIT, hang-up) was given up, not failed
                self._end(op, "cancelled" if walked_away else "failed", None)

    def _end(self, op: Operation, status: str, code: int | None) -> None:
        if op in self.open:
            self.open.remove(op)
        op.status, op.code = status, code
        self._count(op, +1)
        if status == "failed":
            self._keep_failed(op)
        self.recent = [*self.recent[-7:], op]

    def _count(self, op: Operation, step: int) -> None:
        per_kind = self.counts.setdefault(op.kind, {"ok": 0, "failed": 0, "cancelled": 0})
        per_kind[op.status] += step

    @staticmethod
    def _record(op: Operation) -> dict[str, Any]:
        return {"kind": op.kind, "command": op.verb, "arg": op.arg, "code": op.code}

    def _keep_failed(self, op: Operation) -> None:
        if len(self.failed_ops) < KEPT:
            self.failed_ops.append(self._record(op))

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())

    @property
    def went_wrong(self) -> bool:
        """Something the user asked for failed, the session ended abnormally, or it was
        used for an attack."""
        return self.failed > 0 or self.abnormal is not None or self.attacked

    def summary(self, lang: str = "en") -> dict[str, Any]:
        """The outcome fields of ``session.summary``."""
        total = sum(sum(c.values()) for c in self.counts.values())
        return {
            "operations": total,
            "succeeded": sum(c["ok"] for c in self.counts.values()),
            "failed": self.failed,
            "cancelled": sum(c["cancelled"] for c in self.counts.values()),
            "operations_by_kind": {kind: dict(c) for kind, c in self.counts.items()},
            "failed_operations": list(self.failed_ops),
            "abnormal_end": self.abnormal,
            "outcome_text": self.text(lang),
        }

    def text(self, lang: str = "en") -> str:
        """One line: "all 4 operations succeeded", "1 of 3 uploads failed; ..."."""
        words = knowledge().text.get(lang) or knowledge().text["en"]

        def noun(kind: str, n: int) -> str:
            singular, plural = words[kind]
            return str(singular if n == 1 else plural)

        parts: list[str] = []
        total = sum(sum(c.values()) for c in self.counts.values())
        failed_kinds = [(kind, c) for kind, c in self.counts.items() if c["failed"]]
        for kind, c in failed_kinds:
            n = sum(c.values())
            if n == 1:
                parts.append(words["one_failed"].format(thing=noun(kind, 1)))
            else:
                parts.append(
                    words["some_failed"].format(failed=c["failed"], n=n, things=noun(kind, n))
                )
        cancelled = sum(c["cancelled"] for c in self.counts.values())
        done = total - cancelled
        if not failed_kinds and done:
            kinds = [kind for kind, c in self.counts.items() if c["ok"]]
            kind = kinds[0] if len(kinds) == 1 else "operation"
            if done == 1:
                parts.append(words["one_ok"].format(thing=noun(kind, 1)))
            else:
                parts.append(words["all_ok"].format(n=done, things=noun(kind, done)))
        if cancelled:
            parts.append(words["cancelled"].format(n=cancelled))
        if not total:
            parts.append(words["nothing"])
        if self.abnormal:
            parts.append(words["abnormal"].format(reason=word("reason", self.abnormal, lang)))
        return str(words["separator"]).join(parts)
