"""Command-line ``ftp`` transcripts (tnftp/BSD, GNU inetutils, Windows ``ftp.exe``): raw replies
between ``ftp>`` prompts. With ``debug`` on the client prints ``---> CMD`` lines; without it the
commands are inferred from what the user typed (``get x`` → RETR x) and from the reply codes
(227 answers PASV, 229 EPSV, 215 SYST…), since each reply only makes sense after its command.
"""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, reply_code, text_format
from ftpdiag.importers.errors import kind_of

_PROMPT = re.compile(r"^(?:ftp|tnftp)> ?(.*)$")
_RUN = re.compile(r"^(?:t?n?ftp|ftp\.exe|inetutils-ftp)(?: -\S+)* ([\w.:-]+)(?: (\d+))?$")
_CONNECTED = re.compile(r"^Connected to (\S+?)(?: \([^)]*\))?\.?$")
_NAME = re.compile(r"^(?:Name|User) \((.*)\): ?(\S*)(.*)$")
_PASSWORD = re.compile(r"^Password: ?(.*)$")
_CLIENT_ERROR = re.compile(r"^(?:> )?(?:[\w.-]*ftp(?:\.exe)?): (.*)$")
_MODE = re.compile(r"^Using (binary|ascii) mode to transfer files\.?$", re.I)
_BYTES = re.compile(r"^(?:ftp: )?(\d+) bytes (?:received|sent) in ")
# A 200 reply that names the command it answers ("200 PORT command successful").
_NAMED_200 = re.compile(
    r"\b(PORT|EPRT|OPTS|MODE|STRU|PROT|PBSZ)\b|\b(Type) set|(Active) data connection", re.I
)
_DEBUG = re.compile(r"^---> (.*)$")
# What the user typed → the command the client sends for it.
_TYPED = {"get": "RETR", "recv": "RETR", "put": "STOR", "send": "STOR", "append": "APPE",
          "ls": "LIST", "dir": "LIST", "nlist": "NLST", "mls": "MLSD", "cd": "CWD",
          "delete": "DELE", "mkdir": "MKD", "rmdir": "RMD", "pwd": "PWD", "size": "SIZE",
          "quit": "QUIT", "bye": "QUIT", "close": "QUIT", "disconnect": "QUIT",
          "user": "USER", "binary": "TYPE I", "ascii": "TYPE A"}  # fmt: skip
# Replies that answer a command the client sends on its own.
_IMPLIED = {227: "PASV", 229: "EPSV", 215: "SYST", 211: "FEAT", 213: "SIZE", 350: "REST",
            331: "USER", 332: "USER", 221: "QUIT"}  # fmt: skip
_LOCAL_REMOTE = re.compile(r"^local: (.*) remote: (.*)$")
_TRANSFERS = frozenset({"RETR", "STOR", "APPE", "LIST", "NLST", "MLSD"})


def _score(lines: list[str]) -> float:
    prompts = sum(1 for line in lines if _PROMPT.match(line))
    replies = sum(1 for line in lines if reply_code(line) is not None)
    login = any(_NAME.match(line) or _CONNECTED.match(line) for line in lines)
    if prompts and replies:
        return 0.8
    if any(_CLIENT_ERROR.match(line) for line in lines[:5]) and not replies:
        return 0.5  # the client could not even connect
    return 0.6 if login and replies else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    debug = any(_DEBUG.match(line) for line in lines)
    intent: list[str] = []  # commands the user's last action will send, in order
    for line in lines:
        if run := _RUN.match(line):  # the shell command that started the client
            port = f":{run.group(2)}" if run.group(2) else ""
            out.new(upstream=run.group(1) + port)
            continue
        if connected := _CONNECTED.match(line):
            if not (out.builders and out.current.empty):
                out.new(upstream=connected.group(1))
            out.current.upstream = out.current.upstream or connected.group(1)
            continue
        if prompt := _PROMPT.match(line):
            typed = prompt.group(1).split()
            if typed and typed[0] in ("open", "o") and len(typed) > 1:
                out.new(upstream=typed[1])
            elif typed and not debug and typed[0] in _TYPED:
                verb = _TYPED[typed[0]]
                arg = typed[1] if len(typed) > 1 and not verb.startswith("TYPE") else ""
                intent = [f"{verb} {arg}".strip()]
            continue
        name = _NAME.match(line)
        if name and not debug:
            user = name.group(2) or "anonymous"
            out.current.command(f"USER {user}")
            rest = name.group(3).strip()
            if reply_code(rest) is not None:
                out.current.reply_line(rest)
            continue
        if (files := _LOCAL_REMOTE.match(line)) and not debug:
            if not intent:
                intent = [f"RETR {files.group(2)}"]
            continue
        if _PASSWORD.match(line) and not debug:
            out.current.command("PASS ****")
            continue
        if cmd := _DEBUG.match(line):
            out.current.command(cmd.group(1))
            continue
        if mode := _MODE.match(line):  # the client sent TYPE itself and says which
            out.current.transfer_type = "I" if mode.group(1).lower() == "binary" else "A"
            continue
        if count := _BYTES.match(line):
            out.current.transferred(int(count.group(1)))
            continue
        if error := _CLIENT_ERROR.match(line):
            out.current.client_error(kind_of(error.group(1)), line.strip(), "ftp")
            continue
        code = reply_code(line)
        if code is None:
            if line.startswith(" ") and out.builders:
                out.current.reply_line(line)  # an inner line of a multi-line reply
            continue
        if not debug:
            _infer(out, code, line, intent)
        out.current.reply_line(line)
        if code == 221:
            out.current.close("QUIT answered")


def _infer(out: Collector, code: int, line: str, intent: list[str]) -> None:
    """Send the command this reply answers, when the transcript does not show it."""
    builder = out.current
    if builder.empty and code in (120, 220, 421):
        return  # the greeting
    if builder.awaiting is not None:
        return  # the reply answers a command already shown
    if code in (230, 331, 332, 530) and builder.last_verb in (None, "OPTS"):
        builder.command("USER")  # "user NAME PASSWORD" typed without an echo
        return
    if code in (230, 530, 332) and builder.last_verb == "USER":
        builder.command("PASS ****")
        return
    if line[3:4] == " " and code in _IMPLIED:
        builder.command(_IMPLIED[code])
        return
    if code == 200 and (named := _NAMED_200.search(line)):
        verb = (named.group(1) or named.group(2) or "PORT").upper()
        if verb == "TYPE" and intent and intent[0].startswith("TYPE"):
            builder.command(intent.pop(0))
        else:
            builder.command("TYPE I" if verb == "TYPE" else verb)
        return
    if intent:
        builder.command(intent.pop(0))
        if builder.awaiting in _TRANSFERS and code < 200:
            intent.clear()


TRANSCRIPT = text_format(
    "ftp", "command-line ftp transcripts (tnftp/BSD, GNU, Windows)", _score, _parse
)
