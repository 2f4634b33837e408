"""``ftpdiag analyze``: the diagnosis engine run offline over a saved log, a packet capture
or a pasted one.

The input is detected (ftpdiag's JSON lines, pcap/pcapng, FileZilla, WinSCP, curl, lftp,
``ftp`` transcripts, Python tracebacks, server logs, any text with FTP commands and replies;
see :mod:`ftpdiag.importers`) and rebuilt as the proxy's records, which then go through the
same :class:`~ftpdiag.rules.engine.Diagnoser` as a live session. ``ftpdiag report`` reads its
inputs with :func:`read_records`, so the report and the analysis never disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftpdiag.capture import CaptureError
from ftpdiag.i18n import add_lang_argument, error_line, label, resolve
from ftpdiag.rules.engine import Diagnoser

EVIDENCE_LINES = 6
"""How many command/reply/error lines before a root cause the Markdown block quotes."""


def analyze_records(
    records: list[dict[str, Any]], lang: str = "en", facts: bool = False
) -> list[dict[str, Any]]:
    """Re-run the engine over logged facts; returns the diagnoses and summaries it produces,
    each tagged with its session (and, with ``facts``, every fact before them, as the engine
    enriched it). Diagnoses already in the log are ignored and recomputed."""
    return [produced for _, produced in analyze_indexed(records, lang, facts)]


def analyze_indexed(
    records: list[dict[str, Any]], lang: str = "en", facts: bool = False
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
        produced_all = engine.process(event, fields)
        if facts and produced_all:
            stamp = {"timestamp": record["timestamp"]} if "timestamp" in record else {}
            yield index, {"event": event, "session": sid, **stamp, **produced_all[0][1]}
        for name, produced in produced_all[1:]:
            yield index, {"event": name, "session": sid, **produced}


def _bad_json_lines(source: str, data: bytes) -> None:
    from ftpdiag.importers.jsonl import parse_lines

    for number in parse_lines(data)[1]:
        warning = label("cli.not_json", path=source, line=number)
        print(label("cli.warning", message=warning), file=sys.stderr)


def read_records(paths: list[str]) -> list[dict[str, Any]]:
    """The records of saved logs, captures and pasted client/server logs, in order (what
    ``ftpdiag report`` and ``ftpdiag replay`` read). A JSON-lines line that is not JSON, and
    so every line of a text in which no format finds FTP, is skipped with a warning. Raises
    ``OSError`` (with the path in ``filename``) when a file cannot be read,
    ``UnicodeDecodeError`` when it is neither text nor a capture, ``CaptureError`` when a
    capture is damaged."""
    from ftpdiag import importers

    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            found = importers.read_path(path)
        except CaptureError as exc:
            raise CaptureError(f"{path}: {exc}") from exc
        if found is None:  # read as JSON lines: binary junk raises UnicodeDecodeError, as ever
            data = Path(path).read_bytes()
            data.decode("utf-8")
            _bad_json_lines(path, data)
            continue
        fmt, sessions = found
        if fmt.name == "jsonl":
            _bad_json_lines(path, Path(path).read_bytes())
        records.extend(record for session in sessions for record in session)
    return records


def _line_of(record: dict[str, Any]) -> str | None:
    """A record as the log line a reader recognises (for the Markdown evidence)."""
    event = record["event"]
    if event == "command":
        return f"> {record['verb']} {record.get('arg') or ''}".rstrip()
    if event == "reply":
        first = (str(record.get("text") or "").splitlines() or [""])[0]
        return f"< {record['code']} {first}".rstrip()
    if event == "client.error":
        return f"! {record.get('source')}: {record.get('message')}"
    return None


def markdown(results: list[dict[str, Any]], name: str, source: str, lang: str = "en") -> str:
    """A block to paste back into a forum thread: per session, the root cause, the log lines
    that show it and the fix."""
    trail: dict[str, list[str]] = {}
    shown: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    parts = [label("analyze.markdown_head", lang, source=source, format=name), ""]
    for record in results:
        sid = record.get("session", "-")
        line = _line_of(record)
        if line is not None:
            trail.setdefault(sid, []).append(line)
        elif record["event"] == "diagnosis":
            key = (sid, record["rule"])
            shown.setdefault(key, (record, trail.get(sid, [])[-EVIDENCE_LINES:]))
        elif record["event"] == "session.summary":
            cause = record.get("root_cause")
            if not cause:
                parts += [label("analyze.no_problem", lang, session=sid), ""]
                continue
            diagnosis, evidence = shown.get((sid, cause["rule"]), ({}, []))
            title = f"### {label('analyze.session', lang, session=sid)}: {cause['title']}"
            parts += [title, "", str(cause["explanation"]), ""]
            if evidence:
                parts += [label("analyze.evidence", lang), "", "```", *evidence, "```", ""]
            if diagnosis.get("remedy"):
                parts += [f"{label('analyze.fix', lang)} {diagnosis['remedy']}", ""]
    return "\n".join(parts).rstrip() + "\n"


def _analyze_one(path: str, args: argparse.Namespace) -> int:
    from ftpdiag import importers
    from ftpdiag.console import ConsoleRenderer

    source = "standard input" if path == "-" else path
    data: bytes | None = None  # standard input is read whole (a paste); files by the format
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
            found = importers.read(data, args.input)
        else:
            found = importers.read_path(path, args.input)
    except OSError as exc:
        message = label("cli.cannot_read", path=source, reason=exc.strerror)
        print(error_line(message), file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(error_line(f"{source}: {exc}"), file=sys.stderr)
        return 2
    if found is None:
        names = ", ".join(importers.formats())
        message = f"{source}: no FTP commands or replies found (formats: {names})"
        print(error_line(message), file=sys.stderr)
        return 2
    fmt, sessions = found
    if not any(sessions):
        print(error_line(f"{source}: nothing in it reads as {fmt.name}"), file=sys.stderr)
        return 2
    lang = resolve(args.lang)
    own_log = fmt.name == "jsonl"
    if own_log:
        _bad_json_lines(source, data if data is not None else Path(path).read_bytes())
    records = [record for session in sessions for record in session]
    # The Markdown evidence quotes commands and replies, even those of ftpdiag's own log.
    results = analyze_records(records, lang, facts=not own_log or args.format == "markdown")
    if args.format == "json":
        from ftpdiag.core.facts import level_of

        if not own_log:
            head = {"event": "analyze.input", "input": fmt.name, "path": source}
            print(json.dumps({**head, "sessions": len(sessions)}, ensure_ascii=False))
        for result in results:
            if not own_log:  # the rebuilt log, with the level the proxy would have given
                result = {**result, "level": level_of(result["event"], result)}
            print(json.dumps(result, ensure_ascii=False))
    elif args.format == "markdown":
        print(markdown(results, fmt.name, source, lang), end="")
    else:
        if not own_log:
            header = label(
                "analyze.read_as",
                lang,
                source=source,
                format=fmt.name,
                description=fmt.description,
                sessions=len(sessions),
            )
            print(f"---- {header}")
        render = ConsoleRenderer(color=sys.stdout.isatty(), verbose=True, lang=lang)
        unknown = label("analyze.unknown_peer", lang)
        for result in results:
            if result["event"] == "session.open":  # a log that does not name the peers
                result = {**result, "client": result.get("client") or unknown}
                result["upstream"] = result.get("upstream") or unknown
            print(render(result))
    return 0


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.log:
        status = max(status, _analyze_one(path, args))
    return status


def register(sub: Any) -> None:
    from ftpdiag import importers

    p = sub.add_parser(
        "analyze",
        help="diagnose a saved log: ftpdiag's JSON lines, a packet capture, a client/server log",
    )
    p.add_argument(
        "log", nargs="+", metavar="PATH", help="log files (- reads standard input, for pasting)"
    )
    p.add_argument(
        "--input", choices=sorted(importers.formats()), help="the input format (default: detect)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="console text, the rebuilt JSON-lines log, or a Markdown block for a forum reply",
    )
    add_lang_argument(p)
    p.set_defaults(func=run)
