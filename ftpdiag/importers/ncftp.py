"""NcFTP's debug log (``ncftpget -d stdout``, ``ncftp`` with ``debug``): ``Cmd: USER x``,
``331: Password required`` (a colon after the code, inner lines of a multi-line reply indented
and without code), its own messages (``connect to 1.2.3.4:5 failed: Connection refused.``), and
progress lines that may end with the final reply (``… 3.21 MB/s  226: Transfer complete.``)."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, text_format
from ftpdiag.importers.errors import kind_of

_COMMAND = re.compile(r"^Cmd: (.*)$")
_REPLY = re.compile(r"^(\d{3}): ?(.*)$")
_AFTER_PROGRESS = re.compile(r"\s(\d{3}): (.*)$")  # the final reply printed after a progress bar
_ERROR = re.compile(r"^(connect to \S+ failed: .*|Could not connect to .*|.*timed out.*)$", re.I)
_PROGRAM = re.compile(r"^ncftp\w*: (.*)$")
_CONNECTED = re.compile(r"^Connected to (\S+?)\.?$")


def _score(lines: list[str]) -> float:
    commands = sum(1 for line in lines if _COMMAND.match(line))
    replies = sum(1 for line in lines if _REPLY.match(line))
    program = any(line.startswith(("LibNcFTP", "ncftp")) for line in lines)
    if commands and replies:
        return 0.9
    return 0.5 if program and any(_ERROR.match(line) for line in lines) else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    reply: tuple[int, list[str]] | None = None  # a reply whose inner lines may follow

    def finish() -> None:
        nonlocal reply
        if reply is not None:
            out.current.reply(reply[0], "\n".join(reply[1]))
            reply = None

    for line in lines:
        if reply is not None and line[:1].isspace() and line.strip():
            reply[1].append(line.strip())
            continue
        finish()
        if (match := _REPLY.match(line)) or (
            "ETA:" in line and (match := _AFTER_PROGRESS.search(line))
        ):
            if out.builders and out.current.closed:
                out.new()
            reply = (int(match.group(1)), [match.group(2)])
        elif command := _COMMAND.match(line):
            out.current.command(command.group(1))
        elif connected := _CONNECTED.match(line):
            out.current.upstream = out.current.upstream or connected.group(1)
        elif _ERROR.match(line):
            out.current.client_error(kind_of(line), line.strip(), "ncftp")
        elif program := _PROGRAM.match(line):
            out.current.client_error(kind_of(program.group(1)), line.strip(), "ncftp")
            out.current.close("ncftp gave up")
    finish()


NCFTP = text_format("ncftp", "NcFTP debug log (ncftpget -d)", _score, _parse)
