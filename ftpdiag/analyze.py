"""``ftpdiag analyze``: the diagnosis engine run offline over a saved JSON-lines log or a
packet capture."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftpdiag.capture import CaptureError, capture_sessions, looks_like_capture
from ftpdiag.i18n import add_lang_argument, error_line, label, resolve, reword
from ftpdiag.rules.engine import Diagnoser


def analyze_records(records: list[dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    """Re-run the engine over logged facts; returns the diagnoses and summaries it produces,
    each tagged with its session. Diagnoses already in the log are ignored and recomputed."""
    return [produced for _, produced in analyze_indexed(records, lang)]


def analyze_indexed(
    records: list[dict[str, Any]], lang: str = "en"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``analyze_records`` with the index of the record each result was produced after: the
    report anchors a diagnosis next to the fact that is its evidence."""
    engines: dict[str, Diagnoser] = {}
    for index, record in enumerate(records):
        event = record.get("event")
        if not isinstance(event, str) or event in ("diagnosis", "session.summary"):
            continue
        sid = str(record.get("session", "-"))
        fields = {
            k: v for k, v in record.items() if k not in ("event", "timestamp", "level", "session")
        }
        engine = engines.setdefault(sid, Diagnoser(lang))
        for name, produced in engine.process(event, fields)[1:]:
            yield index, {"event": name, "session": sid, **produced}


def read_records(paths: list[str]) -> list[dict[str, Any]]:
    """The records of saved logs and packet captures, in order; a log line that is not JSON is
    skipped with a warning. Raises ``OSError`` (with the path in ``filename``) when a file
    cannot be read, ``CaptureError`` when a capture is damaged."""
    records: list[dict[str, Any]] = []
    for path in paths:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if looks_like_capture(head):  # a packet capture: rebuilt sessions, not JSON lines
            try:
                records.extend(r for session in capture_sessions(path) for r in session)
            except CaptureError as exc:
                raise CaptureError(f"{path}: {reword('capture', str(exc))}") from exc
            continue
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                warning = label("cli.not_json", path=path, line=number)
                print(label("cli.warning", message=warning), file=sys.stderr)
                continue
            records.append(record)
    return records


def run(args: argparse.Namespace) -> int:
    from ftpdiag.console import ConsoleRenderer

    try:
        records = read_records([args.log])
    except OSError as exc:
        message = label("cli.cannot_read", path=exc.filename, reason=exc.strerror)
        print(error_line(message), file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    lang = resolve(args.lang)
    results = analyze_records(records, lang)
    if args.format == "json":
        for result in results:
            print(json.dumps(result, ensure_ascii=False))
    else:
        render = ConsoleRenderer(color=sys.stdout.isatty(), verbose=True, lang=lang)
        for result in results:
            print(render(result))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("analyze", help=label("help.analyze"), description=label("help.analyze"))
    p.add_argument("log", help=label("help.analyze_log"))
    p.add_argument("--format", choices=("text", "json"), default="text", help=label("help.format"))
    add_lang_argument(p)
    p.set_defaults(func=run)
