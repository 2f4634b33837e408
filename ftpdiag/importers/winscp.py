"""WinSCP session logs: a mark, a millisecond timestamp, the text. ``>`` is what WinSCP sent,
``<`` what it received, ``.`` its own messages, ``!`` raw listing/stderr lines, ``*`` an
exception (the error the user saw)."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, parse_time, share, text_format, unwrap
from ftpdiag.importers.errors import kind_of

_LINE = re.compile(r"^([<>!.*]) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ?(.*)$")
_CONNECTING = re.compile(r"^Connecting to (\S+?)(?: \.\.\.|\.\.\.)?$")
_PORT = re.compile(r"^Host name: (\S+) \(Port: (\d+)\)")
_OWN_ERROR = re.compile(
    r"^(Timeout detected|Network error|Connection failed|Lost connection)", re.I
)
_TRANSFERRED = re.compile(r"(\d+) bytes (?:transferred|sent|received)", re.I)


def _score(lines: list[str]) -> float:
    found = share(lines, _LINE)
    return 0.95 if found > 0.5 else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    upstream: str | None = None
    for line in unwrap(lines, _LINE.match):
        match = _LINE.match(line)
        if match is None:
            continue
        mark, stamp, text = match.groups()
        at = parse_time(stamp, ("%Y-%m-%d %H:%M:%S.%f",))
        if mark == ">":
            out.current.command(text, at)
        elif mark == "<":
            out.current.reply_line(text, at)
        elif mark == "*":
            message = re.sub(r"^\(\w+\)\s*", "", text)
            out.current.client_error(kind_of(message), message, "winscp", at)
        elif mark == ".":
            if port := _PORT.match(text):
                upstream = f"{port.group(1)}:{port.group(2)}"
            elif connecting := _CONNECTING.match(text):
                out.new(upstream=upstream or connecting.group(1))
            elif _OWN_ERROR.match(text):
                out.current.client_error(kind_of(text), text, "winscp", at)
            elif count := _TRANSFERRED.search(text):
                out.current.transferred(int(count.group(1)))
            elif text.startswith(("Disconnected", "Session closed", "Closing connection")):
                out.current.close("disconnected", at)


WINSCP = text_format("winscp", "WinSCP session log", _score, _parse)
