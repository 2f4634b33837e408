"""curl's ``-v`` (``* ``, ``> ``, ``< ``) and ``--trace-ascii`` (``== Info:``, ``=> Send header``)
output: commands, replies, the data-connection attempts and curl's closing ``curl: (NN) …``."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, share, text_format
from ftpdiag.importers.errors import kind_of

_VERBOSE = re.compile(r"^(\*|>|<) ")
_TRACE = re.compile(r"^(== Info:|=> Send header|<= Recv header|<= Recv data|=> Send data|\d{4}: )")
_CONNECTED = re.compile(r"Connected to (\S+) \(([^)]*)\) port (\d+) \(#(\d+)\)")
_FAILED = re.compile(r"(?:connect to .* failed: |Failed to connect .*?: |Connection timed out)(.*)$")
_EXIT = re.compile(r"^curl: \((\d+)\) (.*)$")
_DATA = re.compile(r"^<= Recv data, (\d+) bytes")


def _score(lines: list[str]) -> float:
    verbose = share(lines, _VERBOSE)
    trace = share(lines, _TRACE)
    # "> " and "< " alone are any quoted text: curl's own lines must be there too.
    has_curl = any(
        _CONNECTED.search(line) or _EXIT.match(line) or "Trying " in line for line in lines
    )
    best = max(verbose if has_curl else 0.0, trace)
    return min(1.0, best + 0.3) if best > 0.3 else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    connection: str | None = None
    expect: str | None = None  # the trace's next "0000:" line is a "send" or a "recv" header
    reported = False
    for line in lines:
        if line.startswith("== Info: "):
            info = line[9:].strip()
        elif line.startswith("* "):
            info = line[2:].strip()
        else:
            info = ""
        if info:
            connected = _CONNECTED.search(info)
            if connected and connected.group(4) != connection:
                connection = connected.group(4)
                out.new(upstream=f"{connected.group(2)}:{connected.group(3)}")
                reported = False
            failed = _FAILED.search(info)
            if failed:
                out.current.client_error(kind_of(info), info, "curl")
                reported = True
            continue
        if line.startswith("=> Send header"):
            expect = "send"
        elif line.startswith("<= Recv header"):
            expect = "recv"
        elif data := _DATA.match(line):
            out.current.transferred(int(data.group(1)))
            expect = None
        elif line.startswith(("=> Send data", "<= Recv data")):
            expect = None
        elif re.match(r"^[0-9a-f]{4}: ", line) and expect:
            body = line[6:]
            if expect == "send":
                out.current.command(body)
            else:
                out.current.reply_line(body)
        elif line.startswith("> "):
            out.current.command(line[2:])
        elif line.startswith("< "):
            out.current.reply_line(line[2:])
        elif exit_line := _EXIT.match(line):
            message = exit_line.group(2)
            if not reported:
                out.current.client_error(kind_of(message), line, f"curl ({exit_line.group(1)})")
            out.current.close(f"curl exit {exit_line.group(1)}")
    for builder in out.builders[:-1]:
        builder.close("connection reused or closed")


CURL = text_format("curl", "curl -v or --trace-ascii output", _score, _parse)
