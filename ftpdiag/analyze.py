"""``ftpdiag analyze``: the diagnosis engine run offline over a saved JSON-lines log."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftpdiag.capture import CaptureError, capture_sessions, looks_like_capture
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


def read_records(path: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The facts of an input file, as records shaped like the proxy's JSON lines: what
    ``analyze`` diagnoses and ``replay`` serves. Lines that are not JSON objects are skipped
    with a warning (on stderr unless ``warn`` is given); a packet capture gives the sessions
    rebuilt from it. Raises OSError when unreadable, CaptureError for a damaged capture."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if looks_like_capture(head):  # a packet capture: rebuilt sessions, not JSON lines
        return [r for session in capture_sessions(str(path)) for r in session]
    say = warn or (lambda text: print(f"ftpdiag: warning: {text}", file=sys.stderr))
    records = []
    text = path.read_text(encoding="utf-8", errors="replace")  # binary junk: "not JSON" lines
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            say(f"{path}:{number} is not JSON; skipped")
    return records


def run(args: argparse.Namespace) -> int:
    from ftpdiag.console import ConsoleRenderer

    try:
        records = read_records(Path(args.log))
    except OSError as exc:
        print(f"ftpdiag: error: cannot read {args.log}: {exc.strerror}", file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(f"ftpdiag: error: {args.log}: {exc}", file=sys.stderr)
        return 2
    results = analyze_records(records, args.lang or "en")
    if args.format == "json":
        for result in results:
            print(json.dumps(result, ensure_ascii=False))
    else:
        render = ConsoleRenderer(color=sys.stdout.isatty(), verbose=True)
        for result in results:
            print(render(result))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("analyze", help="diagnose a saved JSON-lines log or a packet capture")
    p.add_argument("log", help="a file written with --log-file, or a pcap/pcapng capture")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--lang", choices=("en", "vi"))
    p.set_defaults(func=run)
