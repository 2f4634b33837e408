"""``lftp -d`` debug output: ``---> `` commands, ``<--- `` replies, ``---- `` status, ``**** ``
errors, and the ``Fatal error:`` / ``cmd: Access failed:`` lines lftp prints at the end."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, share, text_format
from ftpdiag.importers.errors import kind_of, notice_of

_LINE = re.compile(r"^(---> |<--- |---- |\*\*\*\* )")
_CONNECTING = re.compile(r"^---- Connecting to (\S+) \(([^)]*)\) port (\d+)")
_FATAL = re.compile(r"^(?:\S+: )?Fatal error: (.*)$")


def _score(lines: list[str]) -> float:
    found = share(lines, _LINE)
    return min(1.0, found + 0.2) if found > 0.3 and any(_LINE.match(x) for x in lines) else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    said = ""  # lftp repeats its last "****" error as the command's "Fatal error:"
    for line in lines:
        if connecting := _CONNECTING.match(line):
            out.new(upstream=f"{connecting.group(2)}:{connecting.group(3)}")
        elif line.startswith("---> "):
            out.current.command(line[5:])
        elif line.startswith("<--- "):
            out.current.reply_line(line[5:])
        elif line.startswith("**** "):
            said = message = line[5:].strip()
            out.current.client_error(kind_of(message), message, "lftp")
            if "reconnect" in message.lower() or "closed" in message.lower():
                out.current.close("lftp: " + message)
        elif line.startswith("---- Closing control socket"):
            out.current.close("client closed")
        elif line.startswith("---- ") and (notice := notice_of(line)):
            out.current.client_notice(notice, line[5:].strip(), "lftp")
        elif fatal := _FATAL.match(line):
            if fatal.group(1).strip() != said:
                out.current.client_error(kind_of(fatal.group(1)), line.strip(), "lftp")
            out.current.close("lftp fatal error")


LFTP = text_format("lftp", "lftp -d debug output", _score, _parse)
