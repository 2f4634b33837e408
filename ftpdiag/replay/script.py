"""Records in, a replay script out: what a recorded server said, when, and how its data
connections behaved — no sockets.

The input is the proxy's vocabulary of facts (``command``, ``reply``, ``transfer.*``,
``data.*``, ``control.closed``; see the README's event table), whatever produced them: the
live proxy's JSON lines or any importer ``ftpdiag analyze`` reads. The output is a
:class:`Script`: the greeting, the commands in recorded order with the replies each got
(preliminary, then the data connection's story, then the final reply and any unsolicited
lines), and a per-verb table for the commands whose presence differs between clients (FEAT,
SYST, PWD, TYPE, SIZE, …). A :class:`Matcher` then walks the script for one connection:
commands in, answers or mismatches out. The pyftpdlib glue in ``replay/server.py`` only
executes what these values say.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

_DATA = tomllib.loads((Path(__file__).parent / "replay.toml").read_text(encoding="utf-8"))
FLEXIBLE_VERBS = frozenset(_DATA["flexible_verbs"])
ARGUMENT_IGNORED = frozenset(_DATA["argument_ignored"])
ARGUMENT_CASELESS = frozenset(_DATA["argument_case_insensitive"])
REPLIES: Mapping[str, str] = _DATA["replies"]
#: What a server usually says to a flexible command the recording lacks (else REPLIES' 502).
UNRECORDED: Mapping[str, str] = _DATA["unrecorded"]
TRANSFER_VERBS = frozenset({"RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD"})

#: How the server's end of a data connection ended, as the replay reproduces it.
#: ``eof``: closed normally after the bytes; ``reset``: RST after the bytes; ``hold``: the
#: bytes, then nothing and the connection left open (a stall, or the client ended it);
#: ``refused``/``never``: the server never took the connection (refused at once, or never
#: accepted / never dialled).
Ending = Literal["eof", "reset", "hold", "refused", "never"]


def normalise(verb: str, arg: str) -> str:
    """The part of an argument a replay compares: whitespace collapsed, case folded where the
    protocol ignores it, nothing at all where it is secret or names an ephemeral port."""
    verb = verb.upper()
    if verb in ARGUMENT_IGNORED:
        return ""
    arg = " ".join(arg.split())
    return arg.upper() if verb in ARGUMENT_CASELESS else arg


@dataclass(frozen=True, slots=True)
class RecordedReply:
    """One reply as the server sent it; ``at`` is seconds after the command (or the connect)."""

    code: int
    text: str
    at: float = 0.0

    @property
    def wire(self) -> bytes:
        """The reply's bytes: RFC 959 §4.2 form, the first and last lines carrying the code.
        Inner lines are kept as recorded, so a line that looks like another code's end (the
        evidence of a ``mismatched_codes`` reply) goes out again exactly. Code 0 is a line the
        server sent that was no reply at all (``protocol.malformed_reply``): sent as it was."""
        lines = self.text.split("\n")
        if self.code == 0:
            out = lines
        elif len(lines) == 1:
            out = [f"{self.code} {lines[0]}"]
        else:
            out = [f"{self.code}-{lines[0]}", *lines[1:-1], f"{self.code} {lines[-1]}"]
        return "".join(f"{line}\r\n" for line in out).encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Transfer:
    """What the server's end of one data connection did: how many bytes, how it ended."""

    verb: str
    path: str
    direction: Literal["download", "upload"]
    size: int
    ending: Ending
    duration: float = 0.0
    #: A file of the real bytes (``ftpdiag proxy --record-data``), else filler is sent.
    data_file: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded command and everything the server did in answer to it."""

    verb: str
    arg: str
    preliminary: tuple[RecordedReply, ...] = ()
    transfer: Transfer | None = None
    final: tuple[RecordedReply, ...] = ()
    #: The server closed the control connection after the step (a 421, a drop mid-transfer).
    close: bool = False
    #: PORT/EPRT: the server connected back before answering (pyftpdlib does), not at the
    #: transfer command (vsftpd does).
    dial_now: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.verb, normalise(self.verb, self.arg)

    @property
    def shown(self) -> str:
        """The command as a person reads it in a mismatch (never a password)."""
        arg = "****" if self.verb in ("PASS", "ACCT") else self.arg
        return f"{self.verb} {arg}".rstrip()


@dataclass(frozen=True, slots=True)
class Script:
    """A recorded session, ready to be served again."""

    session: str
    #: The greeting: empty when the server never spoke (``greeting.timeout``).
    greeting: tuple[RecordedReply, ...]
    steps: tuple[Step, ...]
    flexible: Mapping[tuple[str, str], tuple[Step, ...]] = field(default_factory=dict)
    close_after_greeting: bool = False

    def summary(self) -> dict[str, Any]:
        """What the replay will do, for the console line printed when it starts."""
        transfers = [s.transfer for s in self.steps if s.transfer is not None]
        greeting = self.greeting[-1].code if self.greeting else None
        return {
            "session": self.session,
            "greeting": greeting,
            "commands": len(self.steps),
            "flexible": sorted({verb for verb, _ in self.flexible}),
            "transfers": [f"{t.verb} {t.path} {t.size} B {t.ending}" for t in transfers],
            "closes": self.close_after_greeting or any(s.close for s in self.steps),
        }


class ScriptError(ValueError):
    """The input holds no session that can be replayed (said plainly, never a traceback)."""


def sessions_in(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The session ids of the input, in the order they first appear."""
    seen: dict[str, None] = {}
    for record in records:
        if record.get("event") in ("command", "reply", "session.open"):
            seen.setdefault(str(record.get("session", "-")), None)
    return list(seen)


def build_script(records: Iterable[Mapping[str, Any]], session: str | None = None) -> Script:
    """The script of one session (the first one when ``session`` is None)."""
    records = list(records)
    ids = sessions_in(records)
    if not ids:
        raise ScriptError("no FTP session in the input (no command or reply records)")
    chosen = ids[0] if session is None else session
    if chosen not in ids:
        raise ScriptError(f"no session {chosen!r} in the input; sessions: {', '.join(ids)}")
    builder = _Builder()
    for record in records:
        if str(record.get("session", "-")) == chosen:
            builder.feed(record)
    return builder.finish(chosen)


def _seconds(record: Mapping[str, Any]) -> float | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class _Draft:
    """A step being assembled from records."""

    verb: str
    arg: str
    started: float | None
    preliminary: list[RecordedReply] = field(default_factory=list)
    final: list[RecordedReply] = field(default_factory=list)
    transfer: dict[str, Any] | None = None
    transfer_end: dict[str, Any] | None = None
    data_file: str | None = None
    failed: str | None = None
    stalled: bool = False
    progress: Any = None
    close: bool = False
    dial_now: bool = False

    @property
    def answered(self) -> bool:
        return bool(self.final)


class _Builder:
    """Folds one session's records into drafts, then into a script."""

    def __init__(self) -> None:
        self.greeting: list[RecordedReply] = []
        self.connected: float | None = None
        self.drafts: list[_Draft] = []
        self.by_pipe: dict[Any, _Draft] = {}
        self.pipe_failures: dict[Any, str] = {}
        self.close_after_greeting = False

    def feed(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        if event == "session.open":
            self.connected = _seconds(record)
        elif event == "command":
            verb = str(record.get("verb", "")).upper()
            self.drafts.append(_Draft(verb, str(record.get("arg") or ""), _seconds(record)))
        elif event == "reply":
            self._reply(record)
        elif event == "protocol.malformed_reply":
            self._reply({**record, "code": 0, "unsolicited": True})
        elif event == "transfer.start":
            draft = self._open_for(str(record.get("command", "")))
            if draft is not None:
                draft.transfer = dict(record)
                draft.failed = self.pipe_failures.get(record.get("pipe"))
                self.by_pipe[record.get("pipe")] = draft
        elif event == "data.failed" and record.get("side") == "server":
            # A failure may come before the transfer command (the proxy's dial to a passive
            # port) or during it (a stall): kept per pipe either way.
            kind = str(record.get("kind"))
            self.pipe_failures[record.get("pipe")] = kind
            draft = self.by_pipe.get(record.get("pipe"))
            if draft is not None:
                draft.stalled |= kind == "stall"
                draft.failed = kind
        elif event == "transfer.progress":
            # Two reports with the same count: the data stopped while the pipe stayed open.
            draft = self.by_pipe.get(record.get("pipe"))
            if draft is not None:
                moved = record.get("bytes")
                draft.stalled |= moved == draft.progress
                draft.progress = moved
        elif event == "transfer.end":
            draft = self.by_pipe.get(record.get("pipe"))
            if draft is not None:
                draft.transfer_end = dict(record)
        elif event == "transfer.data":
            draft = self.by_pipe.get(record.get("pipe"))
            if draft is not None and isinstance(record.get("file"), str):
                draft.data_file = str(record["file"])
        elif event == "data.connect" and record.get("side") == "server" and self.drafts:
            last = self.drafts[-1]
            last.dial_now |= last.verb in ("PORT", "EPRT") and not last.answered
        elif event == "control.closed" and record.get("side") == "server":
            if self.drafts:
                self.drafts[-1].close = True
            else:
                self.close_after_greeting = True

    def _open_for(self, verb: str) -> _Draft | None:
        """The oldest unanswered step for this verb (clients may pipeline commands)."""
        for draft in self.drafts:
            if draft.verb == verb and not draft.answered:
                return draft
        return None

    def _reply(self, record: Mapping[str, Any]) -> None:
        code = int(record.get("code") or 0)
        command = record.get("command")
        draft = None
        if command is not None and not record.get("unsolicited"):
            draft = self._open_for(str(command).upper())
        if draft is None and not self.drafts:
            at = _latency(record, self.connected)
            self.greeting.append(RecordedReply(code, str(record.get("text", "")), at))
            return
        if draft is None:
            draft = self.drafts[-1]  # unsolicited, or a timeout's 421: after the last step
        reply = RecordedReply(code, str(record.get("text", "")), _latency(record, draft.started))
        if 100 <= code < 200 and not draft.answered:
            draft.preliminary.append(reply)
        else:
            draft.final.append(reply)

    def finish(self, session: str) -> Script:
        steps = [_step(draft) for draft in self.drafts]
        ordered: list[Step] = []
        flexible: dict[tuple[str, str], list[Step]] = {}
        for step in steps:
            if step.verb in FLEXIBLE_VERBS and not step.close and step.transfer is None:
                flexible.setdefault(step.key, []).append(step)
            else:
                ordered.append(step)
        return Script(
            session,
            tuple(self.greeting),
            tuple(ordered),
            {key: tuple(found) for key, found in flexible.items()},
            self.close_after_greeting,
        )


def _latency(record: Mapping[str, Any], since: float | None) -> float:
    """Seconds from the command (or the connect) to this reply: the recorded latency, or the
    timestamps' difference when an importer gave no latency."""
    latency = record.get("latency_ms")
    if isinstance(latency, int | float):
        return max(0.0, float(latency) / 1000)
    now = _seconds(record)
    return max(0.0, now - since) if now is not None and since is not None else 0.0


def _transfer(draft: _Draft, end: Mapping[str, Any]) -> Transfer:
    start = draft.transfer or {}
    server_end = str(end.get("server_end", "eof"))
    size = int(end.get("bytes") or 0)
    upload = start.get("direction", end.get("direction")) == "upload"
    answered = isinstance(end.get("outcome"), int)
    if server_end == "never" and size:
        # The session ended before the pipe did (the client hung up mid-transfer), so the
        # server's end existed; unless the progress reports showed a stall, the server ended
        # it (curl hangs up when the data ends, often before the 426 that followed arrives).
        server_end = "eof"
    elif not upload and not answered and end.get("first_closed") == "client":
        # The client hung up a download the server never finished: how the server's end
        # then closed was only its answer to that.
        server_end = "closed"
    ending: Ending
    if draft.failed == "refused":
        ending = "refused"
    elif server_end == "never" or draft.failed in ("timeout", "unreachable"):
        ending = "never"
    elif draft.stalled or server_end == "closed":
        ending = "hold"
    elif server_end == "reset":
        ending = "reset"
    else:
        ending = "eof"
    direction: Literal["download", "upload"] = "upload" if upload else "download"
    return Transfer(
        verb=str(start.get("command", end.get("command", draft.verb))),
        path=str(start.get("path", end.get("path", ""))),
        direction=direction,
        size=size,
        ending=ending,
        duration=float(end.get("duration_ms") or 0) / 1000,
        data_file=draft.data_file,
    )


def _step(draft: _Draft) -> Step:
    transfer = None
    if draft.transfer_end is not None:
        transfer = _transfer(draft, draft.transfer_end)
    elif draft.transfer is not None:
        # The session ended before the transfer did: what moved is unknown, the end is not.
        transfer = _transfer(draft, {"bytes": 0, "server_end": "closed"})
    if not draft.preliminary and draft.failed is None:
        # Answered before any data moved (550, or a 425 of the server's own): no data to
        # serve. Kept when the recorded data connection itself failed (refused, unanswered).
        transfer = None
    return Step(
        draft.verb,
        draft.arg,
        tuple(draft.preliminary),
        transfer,
        tuple(draft.final),
        draft.close,
        draft.dial_now,
    )


# ---- matching one connection against the script ---------------------------------------------
@dataclass(frozen=True, slots=True)
class Mismatch:
    """A command the recording did not expect; ``expected`` is None past the recording's end."""

    actual: str
    expected: str | None

    def __str__(self) -> str:
        return f"expected {self.expected or '(end of recording)'}, got {self.actual}"


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A flexible command the recorded client never sent (answered 502, not a failure)."""

    verb: str


class Matcher:
    """Walks one connection through a script: the recorded commands in order, the flexible
    ones from their table (cycling through the recorded answers of a verb and argument)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.position = 0
        self._uses: dict[tuple[str, str], int] = {}

    @property
    def expected(self) -> Step | None:
        steps = self.script.steps
        return steps[self.position] if self.position < len(steps) else None

    def upcoming_transfer(self) -> Transfer | None:
        """The transfer the next data connection will carry, as recorded (None: no data, or
        a transfer refused before any data moved)."""
        for step in self.script.steps[self.position :]:
            if step.verb in TRANSFER_VERBS:
                return step.transfer
            if step.verb in ("PASV", "EPSV", "PORT", "EPRT"):
                return None
        return None

    def match(self, verb: str, arg: str) -> Step | Mismatch | Unrecorded:
        """The recorded step that answers this command, or why there is none."""
        verb = verb.upper()
        key = (verb, normalise(verb, arg))
        expected = self.expected
        if expected is not None and expected.key == key:
            self.position += 1
            return expected
        if verb in FLEXIBLE_VERBS:
            answers = self.script.flexible.get(key)
            if answers:
                used = self._uses.get(key, 0)
                self._uses[key] = used + 1
                return answers[used % len(answers)]
            return Unrecorded(verb)
        shown = f"{verb} {'****' if verb in ('PASS', 'ACCT') else arg}".rstrip()
        return Mismatch(shown, expected.shown if expected is not None else None)
