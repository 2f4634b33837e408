"""What every text importer does first: decode, redact passwords, undo the damage of pasting.

A log pasted into a forum or an issue arrives quoted (``> `` on every line), inside Markdown
fences, indented as a code block, with CRLF or bare CR line ends, sometimes with the shell
prompt that ran the client (dropped; the command it ran is kept). The importers parse the
clean lines; redaction happens here, once, before any parser sees the text, so no record,
report or error message can carry a password.
"""

from __future__ import annotations

import re
import textwrap

from ftpdiag.core.messages import redact_url_passwords

_FENCE = re.compile(r"^\s*(```|~~~)")
# The prompt of the shell that ran the client ("$ ", "user@host:~$ ", "C:\\Users\\a>", "PS C:\\>"):
# dropped, the command it ran kept (it may name the server).
_PROMPT = re.compile(
    r"^(?:(?:[\w.-]+@[\w.-]+(?::[^$#\s]*)?[$#]|[$#%])[ \t]+|(?:PS )?[A-Za-z]:\\[^>]*>[ \t]*)(?=\S)"
)
_QUOTE = re.compile(r"^ ?>[ \t]?")
# Upper case only ("pass" in prose is a word), and only where a log puts a command: at the
# start of a line, after a marker ("> ", "---> ", "Command:\t", "0000: ", a quote) or after a
# timestamp; "530 Log in with USER and PASS first" is a reply, not a password.
_PASS = re.compile(
    r"((?:^|[^\w\s]|\t|\d\d:\d\d(?::\d\d)?(?:[.,]\d+)?)[ \t]*)(PASS|ACCT)([ \t]+)"
    r"(?!\*+\s*$)(\S.*?)(['\"]?\s*)$",
    re.M,
)
_USER_OPTION = re.compile(
    r"((?:^|\s)(?:-u|--user|--proxy-user|-U)[ \t]+['\"]?[^\s:,'\"]*[:,])([^\s'\"]+)", re.M
)
_LOGIN_CALL = re.compile(
    r"(\.login\(\s*(?:user\s*=\s*)?['\"][^'\"]*['\"]\s*,\s*(?:passwd\s*=\s*)?)(['\"])(.*?)\2"
)
_PASSWORD_FIELD = re.compile(r"((?:passw(?:or)?d|passwd|pwd)[ \t]*[=:][ \t]*)(?!\*+\b)(\S+)", re.I)
SECRET = "****"


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 when it has a BOM (Windows
    PowerShell redirects), else Latin-1 so that nothing is lost."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _redact_line(line: str) -> str:
    # Each pattern runs only on lines that can hold it: scanning every position of a large
    # log with five patterns would dominate the import.
    low = line.lower()
    if "PASS" in line or "ACCT" in line:
        line = _PASS.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{SECRET}{m[5]}", line)
    if "://" in line:
        line = redact_url_passwords(line)
    if "-u" in line or "-U" in line:
        line = _USER_OPTION.sub(lambda m: f"{m[1]}{SECRET}", line)
    if ".login(" in line:
        line = _LOGIN_CALL.sub(lambda m: f"{m[1]}{m[2]}{SECRET}{m[2]}", line)
    if "passw" in low or "pwd" in low:
        line = _PASSWORD_FIELD.sub(lambda m: f"{m[1]}{SECRET}", line)
    return line


def redact(text: str) -> str:
    """Replace every password the text shows: the argument of PASS/ACCT, the password part of
    ``scheme://user:password@host``, curl/lftp ``-u user:password``, ``ftp.login(user, pw)``
    and ``password=...``-style settings. Line by line: no secret spans lines."""
    return "\n".join(_redact_line(line) for line in text.split("\n"))


def _unquote(lines: list[str]) -> list[str]:
    """Strip e-mail/forum quote markers while *every* non-empty line has one: a curl or WinSCP
    log has ``>`` on its command lines only, so it is never mistaken for a quote."""
    for _ in range(5):
        body = [line for line in lines if line.strip()]
        if not body or not all(_QUOTE.match(line) for line in body):
            break
        lines = [_QUOTE.sub("", line, count=1) for line in lines]
    return lines


def clean_lines(data: bytes) -> list[str]:
    """The pasted input as clean, redacted lines (fences and quoting removed, dedented)."""
    text = redact(decode(data).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))
    lines = [
        _PROMPT.sub("", line, count=1)
        for line in _unquote(text.split("\n"))
        if not _FENCE.match(line)
    ]
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip("\n").split("\n")
