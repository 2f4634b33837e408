"""What a report shows, computed from the records alone (sans-IO, no HTML here).

Input: the records of one or more sessions, shaped like the proxy's JSON-lines log, with the
engine's ``diagnosis`` and ``session.summary`` records placed right after the fact that
produced them (``ftpdiag.analyze.analyze_indexed`` gives that order). Output: per session, the
timeline rows (one per command, reply, proxy rewrite and diagnosis, in order) and the data
channels (one per pipe) on a common time axis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Records that become no row of their own: drawn elsewhere (progress, the summary), or
#: connection detail that the channel bars already show.
_NO_ROW = frozenset(
    {
        "session.open",
        "session.close",
        "session.summary",
        "transfer.progress",
        "data.listen",
        "data.connect",
        "data.close",
        "upstream.connect",
        "control.closed",
        "report.omitted",
    }
)
_SEVERITIES = frozenset({"info", "warning", "error"})
_OPENS_DATA = frozenset({"PASV", "EPSV", "PORT", "EPRT", "LPSV", "LPRT", "SPSV"})
_TRANSFER_CODES = frozenset({125, 150, 225, 226, 250, 421, 425, 426, 450, 451, 452, 550, 551})
#: Fields of a generic ftpdiag-lane row that say nothing a reader needs.
_QUIET_FIELDS = frozenset({"event", "timestamp", "level", "session", "pipe"})


@dataclass
class Row:
    """One line of the timeline: ``lane`` is client, ftpdiag or server (or all, a diagnosis)."""

    kind: str  # command | reply | proxy | note | diagnosis | gap (rows left out)
    lane: str
    t: float
    text: str
    cls: str = ""  # c1..c5 for replies, info/warning/error for diagnoses
    more: list[str] = field(default_factory=list)  # further lines of a multi-line reply
    latency_ms: float | None = None
    pipe: int | None = None
    detail: str = ""
    diagnosis: dict[str, Any] | None = None
    anchor: str = ""
    #: On a command row: the reply that answered it, drawn in the server lane of the same row
    #: (one row per exchange halves the rows of a long session; later replies get their own).
    reply: Row | None = None
    verb: str = ""


@dataclass
class Channel:
    """One data connection (a pipe): when it ran, what moved, how it ended."""

    pipe: int
    start: float
    end: float | None = None
    command: str = ""
    path: str = ""
    direction: str = ""
    mode: str = ""
    bytes: int = 0
    expected: int | None = None
    outcome: Any = None
    ended: str = ""  # how each end closed, or the failure
    rate_mbps: float | None = None
    progress: list[tuple[float, int]] = field(default_factory=list)
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, reply code)
    rewrite: str = ""  # PASV advertised → dialled
    failed: str = ""
    tls: list[str] = field(default_factory=list)  # "server TLSv1.3 resumed", per side
    diagnoses: list[str] = field(default_factory=list)  # anchors of its diagnoses

    @property
    def bad(self) -> bool:
        return bool(self.failed) or not (
            isinstance(self.outcome, int) and 200 <= self.outcome < 300
        )


@dataclass
class SessionReport:
    """Everything one session's part of the report shows."""

    sid: str
    start: float
    end: float
    started_at: str = ""
    client: str = ""
    upstream: str = ""
    source: str = ""  # the input a session came from, when it says (a capture's file name)
    rows: list[Row] = field(default_factory=list)
    channels: dict[int, Channel] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    diagnoses: list[Row] = field(default_factory=list)
    omitted: int = 0
    commands: int = 0

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-6)

    def root_cause(self) -> tuple[dict[str, Any], Row | None] | None:
        """The summary's root cause and the diagnosis row it names (for the remedy, the link)."""
        cause = self.summary.get("root_cause")
        if not isinstance(cause, dict):
            return None
        for row in self.diagnoses:
            assert row.diagnosis is not None
            if row.diagnosis.get("rule") == cause.get("rule"):
                return cause, row
        return cause, None


def _seconds(record: dict[str, Any]) -> float | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _count(value: Any) -> int:
    """A byte or record count from a log, where anything else (a hand-edited file) is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _reply_class(code: Any) -> str:
    return f"c{code // 100}" if isinstance(code, int) and 100 <= code < 600 else "c0"


def _lines(text: Any) -> list[str]:
    return str(text or "").split("\n")


def _brief(record: dict[str, Any]) -> str:
    """A generic fact as ``key=value`` pairs (the event table's fields, nothing invented)."""
    parts = []
    for key, value in record.items():
        if key in _QUIET_FIELDS or value is None or value == "" or value == []:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        parts.append(f"{key}={value}")
    return " ".join(parts)


class _Builder:
    """Folds one session's records into a ``SessionReport``."""

    def __init__(self, sid: str, t0: float) -> None:
        self.s = SessionReport(sid, t0, t0)
        # Anchors are written into id and href attributes: only characters that need no escape.
        self.anchor_sid = re.sub(r"[^A-Za-z0-9_-]", "_", sid)
        self.pending: list[Row] = []  # rows since a PASV/PORT, before its pipe is known
        self.pipe: int | None = None  # the pipe that current command/reply rows belong to
        self.ended_pipe = False
        self.sizes: dict[str, int] = {}
        self.last_size_path = ""
        self.last: Row | None = None
        self.last_channel: Channel | None = None

    def row(self, row: Row) -> Row:
        row.anchor = f"s{self.anchor_sid}-r{len(self.s.rows)}"
        self.s.rows.append(row)
        if row.kind != "diagnosis":
            self.last = row
        return row

    def channel(self, pipe: int, t: float) -> Channel:
        chan = self.s.channels.get(pipe)
        if chan is None:
            chan = self.s.channels[pipe] = Channel(pipe, t)
            for row in self.pending:
                row.pipe = pipe
            self.pending = []
        self.pipe = pipe
        self.ended_pipe = False
        self.last_channel = chan
        return chan

    def add(self, r: dict[str, Any], t: float) -> None:
        event = str(r.get("event"))
        self.s.end = max(self.s.end, t)
        rel = t - self.s.start
        pipe = r.get("pipe") if isinstance(r.get("pipe"), int) else None
        if event == "session.open":
            self.s.client, self.s.upstream = str(r.get("client", "")), str(r.get("upstream", ""))
            self.s.source = str(r.get("input") or "")
            self.s.started_at = str(r.get("timestamp", ""))
        elif event == "session.summary":
            self.s.summary = {k: v for k, v in r.items() if k not in _QUIET_FIELDS}
        elif event == "report.omitted":
            left_out = _count(r.get("records"))
            self.s.omitted += left_out
            self.row(Row("gap", "all", rel, str(left_out)))
        elif event == "command":
            self._command(r, rel)
        elif event == "reply":
            self._reply(r, rel)
        elif event == "diagnosis":
            self._diagnosis(r, rel)
        if pipe is not None and event.startswith(("transfer.", "data.", "tls.")):
            self._data(event, r, rel, pipe)
        if event not in _NO_ROW and event not in ("command", "reply", "diagnosis"):
            self._note(event, r, rel, pipe)

    def _command(self, r: dict[str, Any], rel: float) -> None:
        verb = str(r.get("verb", ""))
        self.s.commands += 1
        if self.ended_pipe:
            self.pipe, self.ended_pipe = None, False
        text = f"{verb} {r.get('arg') or ''}".rstrip()
        row = self.row(Row("command", "client", rel, text, pipe=self.pipe, verb=verb))
        if verb in _OPENS_DATA:
            self.pipe = None
            row.pipe = None
            self.pending = [row]
        elif self.pending:
            self.pending.append(row)
        if verb == "SIZE":
            self.last_size_path = str(r.get("arg") or "")

    def _reply(self, r: dict[str, Any], rel: float) -> None:
        code = r.get("code")
        lines = _lines(r.get("text"))
        row = Row(
            "reply",
            "server",
            rel,
            f"{code} {lines[0]}",
            cls=_reply_class(code),
            more=lines[1:],
            latency_ms=r.get("latency_ms"),
            pipe=self.pipe,
            detail=str(r.get("meaning") or ""),
        )
        asked = self._asking()
        if (
            asked is not None
            and asked.kind == "command"
            and asked.reply is None
            and asked.verb == r.get("command")
            and not r.get("unsolicited")
        ):
            asked.reply, asked.cls = row, row.cls
            row = asked
        else:
            self.row(row)
        if self.pending:
            self.pending.append(row)
        size = lines[0].strip()
        digits = size.isascii() and size.isdigit() and len(size) < 20
        if r.get("command") == "SIZE" and code == 213 and digits:
            self.sizes[self.last_size_path] = int(size)
        chan = self.s.channels.get(self.pipe) if self.pipe is not None else None
        answers = chan is not None and r.get("command") in (chan.command or None, None)
        if not isinstance(code, int) or code not in _TRANSFER_CODES or r.get("unsolicited"):
            return
        if chan is not None and answers:
            chan.marks.append((rel, code))

    def _asking(self) -> Row | None:
        """The command row a reply may join: the last row, or the last before ftpdiag's own
        notes about it (``transfer.start`` comes between RETR and its 150)."""
        for row in reversed(self.s.rows):
            if row.kind != "note":
                return row
        return None

    def _diagnosis(self, r: dict[str, Any], rel: float) -> None:
        d = {k: v for k, v in r.items() if k not in _QUIET_FIELDS}
        anchor_pipe = self.last.pipe if self.last is not None else None
        row = self.row(
            Row(
                "diagnosis",
                "all",
                rel,
                str(d.get("title", "")),
                cls=str(d.get("severity")) if str(d.get("severity")) in _SEVERITIES else "info",
                pipe=anchor_pipe,
                diagnosis=d,
            )
        )
        self.s.diagnoses.append(row)
        if self.pending:
            self.pending.append(row)
        evidence: dict[str, Any] = d["evidence"] if isinstance(d.get("evidence"), dict) else {}
        chan = self.last_channel if self.last_channel is not None else None
        if chan is not None and (anchor_pipe == chan.pipe or evidence.get("path") == chan.path):
            chan.diagnoses.append(row.anchor)
            if isinstance(evidence.get("expected"), int):
                chan.expected = evidence["expected"]

    def _data(self, event: str, r: dict[str, Any], rel: float, pipe: int) -> None:
        chan = self.channel(pipe, rel)
        if event == "transfer.start":
            chan.start = rel
            chan.command, chan.path = str(r.get("command", "")), str(r.get("path") or "")
            chan.direction = str(r.get("direction", ""))
            mode = r.get("mode")
            if isinstance(mode, dict):
                chan.mode = " / ".join(f"{k} {v}" for k, v in mode.items())
            chan.expected = self.sizes.get(chan.path, chan.expected)
        elif event == "transfer.progress":
            if isinstance(r.get("bytes"), int):
                chan.progress.append((rel, r["bytes"]))
        elif event == "transfer.end":
            chan.end = rel
            chan.bytes = _count(r.get("bytes"))
            chan.outcome = r.get("outcome")
            chan.rate_mbps = r.get("rate_mbps")
            ends = [
                f"{side} {r[f'{side}_end']}"
                for side in ("client", "server")
                if r.get(f"{side}_end")
            ]
            chan.ended = ", ".join(ends)
            self.ended_pipe = True
        elif event == "data.passive":
            advertised, dialled = r.get("advertised"), r.get("dialled")
            # From a capture nothing was dialled (null): only the proxy rewrites.
            chan.rewrite = f"{advertised} → {dialled}" if dialled and advertised != dialled else ""
        elif event == "tls.established":
            resumed = " resumed" if r.get("resumed") is True else ""
            chan.tls.append(f"{r.get('side', '')} {r.get('version', '')}{resumed}")
        elif event == "data.failed":
            chan.failed = f"{r.get('side', '')} {r.get('kind', '')}: {r.get('detail', '')}".strip()
            chan.end = rel
            self.ended_pipe = True
        elif event == "data.close" and chan.end is None:
            chan.bytes = _count(r.get("to_client")) + _count(r.get("to_server"))

    def _note(self, event: str, r: dict[str, Any], rel: float, pipe: int | None) -> None:
        cls = ""
        if event == "proxy.reply":
            code = r.get("code")
            text = f"{code} {r.get('text', '')}"
            cls = _reply_class(code)
            self.row(
                Row("proxy", "ftpdiag", rel, text, cls=cls, pipe=pipe or self.pipe, detail=event)
            )
            return
        if event == "data.passive":
            advertised, dialled = r.get("advertised"), r.get("dialled")
            if not dialled or advertised == dialled:
                return
            text = f"{r.get('code', '')} {advertised} → {dialled}"
            cls = "x"
        elif event == "transfer.start":
            mode: dict[str, Any] = r["mode"] if isinstance(r.get("mode"), dict) else {}
            text = f"⇅ {r.get('command', '')} {r.get('path') or ''} · {r.get('direction', '')}"
            text += f" · {'/'.join(str(v) for v in mode.values())} · TYPE {r.get('type', '')}"
        elif event == "transfer.end":
            ok = isinstance(r.get("outcome"), int) and 200 <= r["outcome"] < 300
            text = (
                f"{'✓' if ok else '✗'} {r.get('command', '')} {r.get('path') or ''} ·"
                f" {r.get('bytes')} B · {r.get('duration_ms')} ms · {r.get('rate_mbps')} Mbit/s"
                f" · {r.get('outcome')}"
            )
            cls = "" if ok else "c4"
        elif event == "tls.established":
            parts = [r.get("side"), r.get("channel"), r.get("version"), r.get("cipher")]
            text = "TLS " + " ".join(str(p) for p in parts if p)
            text += " · resumed" if r.get("resumed") is True else ""
            text += f" · {r['peer_subject']}" if r.get("peer_subject") else ""
        else:
            text = _brief(r)
        if event in ("data.failed", "upstream.failed", "tls.failed") or event.startswith(
            ("protocol.", "security.", "greeting.", "control.", "capture.")
        ):
            cls = "c4"
        self.row(Row("note", "ftpdiag", rel, text, cls=cls, pipe=pipe or self.pipe, detail=event))


def build_sessions(records: list[dict[str, Any]]) -> list[SessionReport]:
    """Group records by session, in order of first appearance; records without a session
    (the proxy's own start-up lines) belong to no session and are not shown."""
    builders: dict[str, _Builder] = {}
    last_t = 0.0
    for index, record in enumerate(records):
        sid = record.get("session")
        if sid is None:
            continue
        t = _seconds(record)
        # Records without a time (another tool's log) keep their order on the axis.
        last_t = t if t is not None else last_t + (0.001 if index else 0.0)
        builder = builders.get(str(sid))
        if builder is None:
            builder = builders[str(sid)] = _Builder(str(sid), last_t)
        builder.add(record, last_t)
    return [b.s for b in builders.values()]
