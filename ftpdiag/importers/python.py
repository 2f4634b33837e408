"""Python ``ftplib``: tracebacks (``ftplib.error_perm: 530 …``, ``socket.gaierror``,
``ConnectionRefusedError``…) and the debug output of ``set_debuglevel`` (``*cmd*``/``*resp*``).

A traceback shows only the failing call: the command is read from the frames (the user's
``ftp.retrbinary("RETR x", …)`` and ftplib's own ``self.sendcmd('PASS ' + passwd)``), the
reply from the exception, and everything before it is marked as not seen.
"""

from __future__ import annotations

import ast
import re

from ftpdiag.importers.base import Collector, text_format
from ftpdiag.importers.builder import SessionBuilder
from ftpdiag.importers.errors import kind_of

_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)')
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|error_\w+|gaierror|timeout)): ?(.*)$")
_FTPLIB_ERROR = re.compile(r"^ftplib\.error_(perm|temp|reply|proto): (\d{3})[ -]?(.*)$")
_DEBUG = re.compile(r"^\*(cmd|resp|put|get)\* (.*)$")
_CALL_STRING = re.compile(
    r"\.(?:retrbinary|retrlines|storbinary|storlines|sendcmd|voidcmd|transfercmd|ntransfercmd)"
    r"\(\s*f?['\"]([A-Za-z]{3,4}(?: [^'\"]*)?)['\"]"
)
_CALL_METHOD = re.compile(r"\.(cwd|delete|size|mkd|rmd|rename|nlst|dir|mlsd|login)\((.*)\)")
_STRING_ARGS = re.compile(r"['\"]([^'\"]*)['\"]")
_METHOD_VERB = {"cwd": "CWD", "delete": "DELE", "size": "SIZE", "mkd": "MKD", "rmd": "RMD",
                "rename": "RNFR", "nlst": "NLST", "dir": "LIST", "mlsd": "MLSD"}  # fmt: skip
_SENDCMD = re.compile(r"sendcmd\(\s*['\"]([A-Z]{3,4})\b")


def _score(lines: list[str]) -> float:
    debug = sum(1 for line in lines if _DEBUG.match(line))
    if debug >= 2:
        return 0.9
    if any(line.startswith(_TRACEBACK) for line in lines) and any(
        "ftplib" in line or _EXCEPTION.match(line) for line in lines
    ):
        return 0.9
    return 0.0


def _literal(text: str) -> str:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip().strip("'\"")
    return str(value)


def _command_from_frames(sources: list[str]) -> list[str]:
    """The commands the failing call sent, most specific (innermost) evidence first."""
    inner = next((m.group(1) for s in reversed(sources) if (m := _SENDCMD.search(s))), None)
    for source in sources:
        if call := _CALL_STRING.search(source):
            return [call.group(1)]
        if method := _CALL_METHOD.search(source):
            name, args = method.group(1), _STRING_ARGS.findall(method.group(2))
            if name == "login":
                user = args[0] if args else "anonymous"
                return [f"USER {user}", "PASS ****"] if inner != "USER" else [f"USER {user}"]
            return [f"{_METHOD_VERB[name]} {args[0] if args else ''}".strip()]
    return [inner] if inner is not None else []


def _traceback(lines: list[str], start: int, builder: SessionBuilder) -> int:
    """Read the traceback that starts at ``lines[start]`` into ``builder``; returns the index
    of its exception line."""
    sources: list[str] = []
    functions: list[str] = []
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if frame := _FRAME.match(line):
            functions.append(frame.group(2))
        elif line.startswith("    ") and line.strip() and not line.strip().startswith("^"):
            sources.append(line.strip())
        elif line.strip() and not line.startswith(" "):
            break
        i += 1
    last = lines[i] if i < len(lines) else ""
    shown = not builder.empty  # debug output already showed the conversation
    if not shown:
        builder.unseen.append("start")
        commands = _command_from_frames(sources)
        for command in commands[:-1]:
            builder.command(command)
        builder.forget_pending()
        if commands:
            builder.command(commands[-1])
    if ftp_error := _FTPLIB_ERROR.match(last):
        if not shown:
            builder.reply(int(ftp_error.group(2)), ftp_error.group(3))
    elif exception := _EXCEPTION.match(last):
        message = f"{exception.group(1)}: {exception.group(2)}".strip()
        # Failing inside ntransfercmd's create_connection: the data connection, not the control.
        data = "ntransfercmd" in functions and functions[-1] in ("create_connection", "connect")
        builder.client_error(kind_of(message), message, "python", channel="data" if data else None)
    builder.close("python exception")
    return i


def _parse(lines: list[str], out: Collector) -> None:
    # Level 1 prints *cmd*/*resp*, level 2 adds the raw *put*/*get*: read one pair only.
    sent, received = (
        ("cmd", "resp") if any(x.startswith("*cmd*") for x in lines) else ("put", "get")
    )
    i = 0
    while i < len(lines):
        line = lines[i]
        if debug := _DEBUG.match(line):
            kind, text = debug.group(1), _literal(debug.group(2)).rstrip("\r\n")
            if out.builders and out.current.closed:
                out.new()  # the script connected again after an error it caught
            if kind == sent:
                out.current.command(text)
            elif kind == received:
                for part in text.split("\n"):
                    out.current.reply_line(part.rstrip("\r"))
        elif line.startswith(_TRACEBACK):
            # Debug output before a traceback is that session's; a traceback after a closed
            # session is a new one.
            fresh = not out.builders or out.current.closed
            builder = out.new() if fresh else out.current
            i = _traceback(lines, i, builder)
        i += 1


PYTHON = text_format("python", "Python ftplib tracebacks and set_debuglevel output", _score, _parse)
