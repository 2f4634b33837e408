"""``ftpdiag proxy --report-dir DIR``: one HTML report per session, written when it closes.

A ``ReportSink`` is one more output of the logging configuration: it sees every record exactly
as the JSON-lines file gets it (timestamp, level, redaction) and keeps those of each open
session. Memory stays bounded on a session of millions of commands: the first and the last
``KEEP // 2`` records are kept, plus every warning and error diagnosis; the report says how many
records it left out. When a session's ``session.summary`` arrives, its report is written (mode
0600: it shows what users did) and ``report.written`` says where.

With ``background`` the HTML is rendered and written by one worker thread (a long session's
report takes a second to draw; the proxy must not stall every other session meanwhile). The
worker is not a daemon: at exit, the reports of the sessions that shutdown closed are finished.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import deque
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ftpdiag.report import build_report

#: Records kept per session (the first half and the last half).
KEEP = 20_000
#: Warning and error diagnoses kept from the part in between.
KEEP_PROBLEMS = 1_000


class _Kept:
    """One session's records: the head, the tail, and the problems in between."""

    def __init__(self, keep: int) -> None:
        self.half = max(keep // 2, 1)
        self.head: list[tuple[int, dict[str, Any]]] = []
        self.tail: deque[tuple[int, dict[str, Any]]] = deque(maxlen=self.half)
        self.problems: list[tuple[int, dict[str, Any]]] = []
        self.seen = 0

    def add(self, record: dict[str, Any]) -> None:
        item = (self.seen, record)
        self.seen += 1
        if len(self.head) < self.half:
            self.head.append(item)
            return
        if len(self.tail) == self.half:
            dropped = self.tail[0][1]
            problem = dropped.get("event") == "diagnosis" and dropped.get("severity") != "info"
            if problem and len(self.problems) < KEEP_PROBLEMS:
                self.problems.append(self.tail[0])
        self.tail.append(item)

    def records(self, sid: str) -> list[dict[str, Any]]:
        kept = sorted(itertools.chain(self.head, self.problems, self.tail), key=lambda i: i[0])
        omitted = self.seen - len(kept)
        out = [record for _, record in kept]
        if omitted:
            out.insert(
                len(self.head), {"event": "report.omitted", "session": sid, "records": omitted}
            )
        return out


class ReportSink:
    """A logging sink (see ``logconfig.configure``) that writes a report per closed session."""

    min_level = 0

    def __init__(
        self,
        directory: Path,
        lang: str,
        emit: Callable[[str, dict[str, Any]], None],
        keep: int = KEEP,
        background: bool = False,
    ) -> None:
        self.directory, self.lang, self.emit, self.keep = directory.absolute(), lang, emit, keep
        self.sessions: dict[str, _Kept] = {}
        self._worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftpdiag-report")
            if background
            else None
        )

    def write(self, level: int, event_dict: MutableMapping[str, Any]) -> None:
        sid, event = event_dict.get("session"), event_dict.get("event")
        if sid is None:
            return
        sid = str(sid)
        if event == "session.open":
            self.sessions[sid] = _Kept(self.keep)
        kept = self.sessions.get(sid)
        if kept is None:  # a session opened before this sink, or report.written itself
            return
        kept.add(dict(event_dict))
        if event == "session.summary":
            del self.sessions[sid]
            records = kept.records(sid)
            if self._worker is None:
                self._write(sid, records)
            else:
                self._worker.submit(self._write, sid, records)

    def finish(self) -> None:
        """Wait until every report asked for is written (before the log file closes)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)

    def _write(self, sid: str, records: list[dict[str, Any]]) -> None:
        stamp = str(records[0].get("timestamp") or "")
        name = f"{stamp[:19].replace('-', '').replace(':', '').replace('T', '-')}-{sid}"
        path = self.directory / f"{name or sid}.html"
        try:
            html = build_report(records, self.lang, recompute=False)
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = _write_private(path, html)
        except OSError as exc:
            self.emit("report.failed", {"session": sid, "path": str(path), "error": exc.strerror})
            return
        self.emit("report.written", {"session": sid, "path": str(path)})


def _write_private(path: Path, text: str) -> Path:
    """Create ``path`` (or ``name-2.html``, … if it exists) readable by its owner only."""
    for n in itertools.count(1):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with contextlib.closing(os.fdopen(fd, "w", encoding="utf-8")) as fh:
            fh.write(text)
        return candidate
    raise AssertionError("unreachable")
