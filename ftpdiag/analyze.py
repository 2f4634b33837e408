"""``ftpdiag analyze``: the diagnosis engine run offline over a saved JSON-lines log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ftpdiag.capture import CaptureError, capture_sessions, looks_like_capture
from ftpdiag.i18n import add_lang_argument, error_line, label, resolve, reword
from ftpdiag.rules.engine import Diagnoser


def analyze_records(records: list[dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    """Re-run the engine over logged facts; returns the diagnoses and summaries it produces,
    each tagged with its session. Diagnoses already in the log are ignored and recomputed."""
    engines: dict[str, Diagnoser] = {}
    out: list[dict[str, Any]] = []
    for record in records:
        event = record.get("event")
        if not isinstance(event, str) or event in ("diagnosis", "session.summary"):
            continue
        sid = str(record.get("session", "-"))
        fields = {
            k: v for k, v in record.items() if k not in ("event", "timestamp", "level", "session")
        }
        engine = engines.setdefault(sid, Diagnoser(lang))
        for name, produced in engine.process(event, fields)[1:]:
            out.append({"event": name, "session": sid, **produced})
    return out


def run(args: argparse.Namespace) -> int:
    from ftpdiag.console import ConsoleRenderer

    try:
        with open(args.log, "rb") as handle:
            head = handle.read(16)
        if looks_like_capture(head):  # a packet capture: rebuilt sessions, not JSON lines
            records = [r for session in capture_sessions(args.log) for r in session]
            lines = []
        else:
            records, lines = [], Path(args.log).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        message = label("cli.cannot_read", path=args.log, reason=exc.strerror)
        print(error_line(message), file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(error_line(f"{args.log}: {reword('capture', str(exc))}"), file=sys.stderr)
        return 2
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warning = label("cli.not_json", path=args.log, line=number)
            print(label("cli.warning", message=warning), file=sys.stderr)
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
