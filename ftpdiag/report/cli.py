"""``ftpdiag report INPUT… -o report.html``: the HTML report of saved logs.

It reads its inputs exactly as ``ftpdiag analyze`` does and re-runs the same engine, so the
report and the analysis never disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ftpdiag.analyze import read_records
from ftpdiag.capture import CaptureError
from ftpdiag.i18n import add_lang_argument, error_line, label, resolve


def read_inputs(paths: list[str]) -> list[dict[str, Any]]:
    """The records of every input, as ``analyze`` reads each; a session id that an earlier
    input already used (each capture numbers its sessions from 0001) gets the input's number,
    so two inputs' sessions never merge into one."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, path in enumerate(paths, 1):
        part = read_records([path])
        ids = {str(r["session"]) for r in part if r.get("session") is not None}
        clash = ids & seen
        for record in part:
            if str(record.get("session")) in clash:
                record["session"] = f"{record['session']}.{number}"
        seen |= {str(r["session"]) for r in part if r.get("session") is not None}
        records.extend(part)
    return records


def run(args: argparse.Namespace) -> int:
    from ftpdiag.report import build_report

    try:
        records = read_inputs(args.inputs)
    except OSError as exc:
        message = label("cli.cannot_read", path=exc.filename, reason=exc.strerror)
        print(error_line(message), file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    if not any(r.get("session") is not None for r in records):
        print(error_line(label("cli.no_session")), file=sys.stderr)
        return 2
    html = build_report(records, resolve(args.lang))
    out: Path = args.output
    try:
        # 0600: a report shows what users did; it is for the person who made it to share.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file of that name keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
    except OSError as exc:
        print(
            error_line(label("cli.cannot_write_file", path=out, reason=exc.strerror)),
            file=sys.stderr,
        )
        return 2
    print(label("cli.report_written", path=out), file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help=label("help.report"),
        description=label("help.report_description"),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=label("help.report_inputs"))
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help=label("help.report_output")
    )
    add_lang_argument(p)
    p.set_defaults(func=run)
