"""curl's ``-v`` (``* ``, ``> ``, ``< ``) and ``--trace-ascii`` (``== Info:``, ``=> Send header``)
output: commands, replies, the data-connection attempts and curl's closing ``curl: (NN) …``."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, share, text_format
from ftpdiag.importers.errors import kind_of, notice_of

_VERBOSE = re.compile(r"^(\*|>|<) ")
_TRACE = re.compile(r"^(== Info:|=> Send header|<= Recv header|<= Recv data|=> Send data|\d{4}: )")
_CONNECTED = re.compile(r"Connected to (\S+) \(([^)]*)\) port (\d+) \(#(\d+)\)")
# curl's info lines that report a failure (the closing "curl: (NN)" line repeats one of them).
_FAILED = re.compile(
    r"(connect to .* failed: |Failed to connect |Connection timed out|Operation timed out"
    r"|SSL certificate problem|SSL connect error|OpenSSL SSL_|gnutls_handshake|schannel: "
    r"|Could not resolve|Recv failure|Send failure)"
)
_CLOSING = re.compile(r"^Closing connection|left intact$")
_EXIT = re.compile(r"^curl: \((\d+)\) (.*)$")
# curl's exit codes (man curl, "EXIT CODES") whose words do not say the kind themselves.
_EXIT_KINDS = {6: "dns", 28: "timeout", 35: "tls", 52: "closed", 56: "reset", 60: "tls",
               67: "login", 78: "not_found"}  # fmt: skip
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
    exit_status: re.Match[str] | None = None

    def finish() -> None:
        """curl's closing line ends the session before it (stderr may even precede the
        trace on stdout: then it waits for the session to exist)."""
        nonlocal exit_status
        if exit_status is None or not out.builders:
            return
        code, message = exit_status.groups()
        if not reported:
            kind = _EXIT_KINDS.get(int(code)) or kind_of(message)
            out.current.client_error(kind, exit_status.group(0), f"curl ({code})")
        out.current.close(f"curl exit {code}")
        exit_status = None

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
                finish()
                out.new(upstream=f"{connected.group(2)}:{connected.group(3)}")
                reported = False
            if notice := notice_of(info):
                out.current.client_notice(notice, info, "curl")
            elif _FAILED.search(info):
                out.current.client_error(kind_of(info), info, "curl")
                reported = True
            elif _CLOSING.search(info):
                out.current.close("client closed")
            continue
        if line.startswith("=> Send header"):
            expect = "send"
        elif line.startswith("<= Recv header"):
            expect = "recv"
        elif data := _DATA.match(line):
            out.current.transferred(int(data.group(1)), chunk=True)
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
            exit_status = exit_line
    finish()
    for builder in out.builders[:-1]:
        builder.close("connection reused or closed")


CURL = text_format("curl", "curl -v or --trace-ascii output", _score, _parse)
