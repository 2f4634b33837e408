"""FileZilla's message log, as copied from the window (``Status:\\t…``, optionally after a
``HH:MM:SS`` timestamp) or as written to its log file (``2024-05-01 10:00:00 1234 1 Status: …``),
in any of the languages FileZilla speaks (``Statut :``, ``Befehl:``, ``Comando:``…; the words
are in ``filezilla.toml``)."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

from ftpdiag.importers.base import Collector, parse_time, text_format, unwrap
from ftpdiag.importers.errors import kind_of

_STAMP = r"(?:(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \d+ \d+ |(?P<time>\d\d:\d\d:\d\d)\s+)?"
_CONNECTING = re.compile(
    r"^(?:Connecting to|Verbinde mit|Connexion à|Conectando a|Connessione a) (\S+?)(?:\.\.\.|…)?$"
)
_ERRNO = re.compile(r"\b(E[A-Z]{4,}|EAI_[A-Z]+) - ")  # "ECONNREFUSED - Connection refused…"
_TRANSFERRED = re.compile(r"transferred ([\d,. ]+) bytes")
_CONSEQUENCE = re.compile(
    r"^(Critical error|Could not connect to server|Failed to retrieve directory listing"
    r"|Critical file transfer error|File transfer failed)",
    re.I,
)


@cache
def _line() -> re.Pattern[str]:
    words = tomllib.loads(
        resources.files("ftpdiag.importers").joinpath("filezilla.toml").read_text("utf-8")
    )["prefix"]
    alternatives = "|".join(
        f"(?P<{kind}>{'|'.join(re.escape(w.rstrip(':').rstrip()) for w in spelled)})"
        for kind, spelled in words.items()
    )
    return re.compile(rf"^{_STAMP}(?:{alternatives})\s?:\s*(?P<text>.*)$")


def _score(lines: list[str]) -> float:
    pattern = _line()
    body = [line for line in lines if line.strip()]
    if not body:
        return 0.0
    hits = [m for line in body if (m := pattern.match(line))]
    kinds = {
        k for m in hits for k, v in m.groupdict().items() if v and k not in ("text", "date", "time")
    }
    if len(hits) / len(body) <= 0.5 or len(kinds) < 2:
        return 0.0
    return 0.95 if {"command", "response"} & kinds else 0.7  # a connection that failed early


def _parse(lines: list[str], out: Collector) -> None:
    pattern = _line()
    errored: set[str] = set()
    for line in unwrap(lines, pattern.match):
        match = pattern.match(line)
        if match is None:
            continue
        at = parse_time(match.group("date") or "", ("%Y-%m-%d %H:%M:%S",)) or parse_time(
            match.group("time") or "", ("%H:%M:%S",)
        )
        text = match.group("text").strip()
        if match.group("status"):
            if connecting := _CONNECTING.match(text):
                out.new(upstream=connecting.group(1))
            elif _ERRNO.search(text):  # "Connection attempt failed with …" in any language
                out.current.client_error(kind_of(text), text, "filezilla", at)
                errored.add(out.current.sid)
            elif count := _TRANSFERRED.search(text):
                out.current.transferred(int(re.sub(r"[^\d]", "", count.group(1))))
            elif text.lower().startswith("disconnected from server"):
                out.current.close("disconnected", at)
        elif match.group("command"):
            out.current.command(text, at)
        elif match.group("response"):
            out.current.reply_line(match.group("text").rstrip(), at)
        elif match.group("error") and not _CONSEQUENCE.match(text):
            kind = kind_of(text)
            if kind == "error" and out.current.sid in errored:
                continue  # a summary ("Could not connect", in any language) of what came before
            out.current.client_error(kind, text, "filezilla", at)
            errored.add(out.current.sid)
            if "disconnected" in text.lower() or "closed by server" in text.lower():
                out.current.close("disconnected", at)


FILEZILLA = text_format("filezilla", "FileZilla's message log (any language)", _score, _parse)
