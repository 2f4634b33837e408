"""The fallback: any text in which FTP commands and ``NNN text`` replies can be found (a
library's debug log, a hand-written transcript). Lines are taken in order; a command is an
upper-case FTP verb at the start of a line (after any ``>``/``->``-like arrow), a reply a
three-digit code followed by a space or a dash. Bracketed forms such as .NET's network trace
(``Sending command [USER bob]``, ``Received response [331 Password required]``) are read too."""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, reply_code, text_format

_VERBS = (
    "USER|PASS|ACCT|CWD|CDUP|QUIT|REIN|PORT|PASV|EPRT|EPSV|TYPE|STRU|MODE|RETR|STOR|STOU|APPE|"
    "ALLO|REST|RNFR|RNTO|ABOR|DELE|RMD|MKD|PWD|LIST|NLST|SITE|SYST|STAT|HELP|NOOP|FEAT|OPTS|"
    "AUTH|PBSZ|PROT|CCC|SIZE|MDTM|MLSD|MLST|CLNT|HOST"
)
_ARROW = r"^(?:.*?(?:-+>|=>|>>|>|→|C:|client:|send:|sent:|cmd:|command \[)\s*)?"
_COMMAND = re.compile(_ARROW + rf"((?:{_VERBS})(?: .*?)?)\]?$", re.I)
_COLON_REPLY = re.compile(r"^(\d{3}): (.*)$")  # ncftp's debug log: "331: Password required"
_REPLY = re.compile(
    r"^(?:.*?(?:<-+|<=|<<|<|←|S:|server:|recv:|received:|resp:|response \[)\s*)?"
    r"(\d{3}[ -].*?)\]?$",
    re.I,
)


def _score(lines: list[str]) -> float:
    commands = sum(1 for line in lines if _COMMAND.match(line.strip()))
    replies = sum(
        1
        for line in lines
        if _COLON_REPLY.match(line.strip())
        or ((m := _REPLY.match(line.strip())) and reply_code(m.group(1)))
    )
    return 0.05 if commands and replies else 0.0


def _parse(lines: list[str], out: Collector) -> None:
    after_reply = False  # indented lines right after a reply are its inner lines ("  EPRT")
    for raw in lines:
        line = raw.strip()
        if out.builders and out.current.reply_open:
            out.current.reply_line(raw)
            continue
        if after_reply and raw[:1].isspace():
            continue
        after_reply = False
        if colon := _COLON_REPLY.match(line):
            line = f"{colon.group(1)} {colon.group(2)}"
        if reply := _REPLY.match(line):
            after_reply = True
            out.current.reply_line(reply.group(1))
            if reply.group(1).startswith("221 "):
                out.current.close("QUIT answered")
        elif command := _COMMAND.match(line):
            verb = command.group(1).split(" ", 1)[0]
            if verb.isupper():  # "user" or "list" in prose is not a command
                out.current.command(command.group(1))


GENERIC = text_format("text", "any text with FTP commands and NNN replies", _score, _parse)
