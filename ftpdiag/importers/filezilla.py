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
from ftpdiag.importers.builder import SessionBuilder
from ftpdiag.importers.errors import kind_of, notice_of

# The log file: date, time, process id, engine id (one engine per connection: parallel
# transfers interleave in one file); the window's copy: an optional time.
_STAMP = (
    r"(?:(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \d+ (?P<engine>\d+) "
    r"|(?P<time>\d\d:\d\d:\d\d)\s+)?"
)
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


_KINDS = ("status", "command", "response", "error", "trace", "listing")


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
    kinds = {k for m in hits for k, v in m.groupdict().items() if v and k in _KINDS}
    if len(hits) / len(body) <= 0.5 or len(kinds) < 2:
        return 0.0
    return 0.95 if {"command", "response"} & kinds else 0.7  # a connection that failed early


class _Engines:
    """The session of each FileZilla engine (a copied log has one stream: engine None)."""

    def __init__(self, out: Collector) -> None:
        self.out = out
        self.current: dict[str | None, SessionBuilder] = {}

    def new(self, engine: str | None, upstream: str) -> SessionBuilder:
        """A new connection of ``engine`` ("Connecting to …")."""
        self.current[engine] = self.out.new(upstream=upstream)
        return self.current[engine]

    def get(self, engine: str | None) -> SessionBuilder:
        """The engine's session; a log that starts mid-session gets one on first use."""
        if engine not in self.current:
            self.current[engine] = self.out.new()
        return self.current[engine]


def _parse(lines: list[str], out: Collector) -> None:
    pattern = _line()
    errored: set[str] = set()
    engines = _Engines(out)
    for line in unwrap(lines, pattern.match):
        match = pattern.match(line)
        if match is None:
            continue
        engine, text = match.group("engine"), match.group("text").strip()
        connecting = _CONNECTING.match(text) if match.group("status") else None
        session = engines.new(engine, connecting.group(1)) if connecting else engines.get(engine)
        at = parse_time(match.group("date") or "", ("%Y-%m-%d %H:%M:%S",)) or parse_time(
            match.group("time") or "", ("%H:%M:%S",)
        )
        if match.group("status") and not connecting:
            if notice := notice_of(text):
                session.client_notice(notice, text, "filezilla", at)
            elif _ERRNO.search(text):  # "Connection attempt failed with …" in any language
                session.client_error(kind_of(text), text, "filezilla", at)
                errored.add(session.sid)
            elif count := _TRANSFERRED.search(text):
                session.transferred(int(re.sub(r"[^\d]", "", count.group(1))))
            elif text.lower().startswith("disconnected from server"):
                session.close("disconnected", at)
        elif match.group("command"):
            session.command(text, at)
        elif match.group("response"):
            session.reply_line(match.group("text").rstrip(), at)
        elif match.group("error") and not _CONSEQUENCE.match(text):
            kind = kind_of(text)
            if kind == "error" and session.sid in errored:
                continue  # a summary ("Could not connect", in any language) of what came before
            session.client_error(kind, text, "filezilla", at)
            errored.add(session.sid)
            if "disconnected" in text.lower() or "closed by server" in text.lower():
                session.close("disconnected", at)


FILEZILLA = text_format("filezilla", "FileZilla's message log (any language)", _score, _parse)
