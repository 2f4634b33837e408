"""The registry of input formats and the pieces every text format shares.

A format is a name, a ``detect`` function that scores the first bytes of the input (0: not
this format, 1: certainly this one) and a ``read`` function that turns the whole input into
sessions, each a list of the proxy's records. Detection works on bytes so that binary inputs
(packet captures, recognised by their magic numbers) register the same way as text logs; text
formats decode and clean the bytes with :mod:`ftpdiag.importers.paste` first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from ftpdiag.importers.builder import Record, SessionBuilder
from ftpdiag.importers.paste import clean_lines

HEAD = 64 * 1024
"""How much of the input detection looks at."""

Sessions = list[list[Record]]


@dataclass(frozen=True)
class Format:
    """One input format: its ``--input`` name, what it is, how to spot it and how to read it.

    ``read_file``, when given, reads a file by its path instead of its bytes (a capture is
    mapped, not read whole)."""

    name: str
    description: str
    detect: Callable[[bytes], float]
    read: Callable[[bytes], Sessions]
    read_file: Callable[[str], Sessions] | None = None


_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format (a later registration of the same name replaces the earlier one)."""
    _REGISTRY[fmt.name] = fmt
    return fmt


def formats() -> dict[str, Format]:
    """Every registered format by name, in registration order."""
    return dict(_REGISTRY)


@dataclass
class Collector:
    """Hands out one :class:`SessionBuilder` per session a log shows, numbered ``s1``, ``s2``…"""

    source: str
    builders: list[SessionBuilder] = field(default_factory=list)

    def new(self, upstream: str | None = None) -> SessionBuilder:
        """Start the next session (a new connection in the log)."""
        builder = SessionBuilder(f"s{len(self.builders) + 1}", self.source, upstream=upstream)
        self.builders.append(builder)
        return builder

    @property
    def current(self) -> SessionBuilder:
        """The session being read; a log that starts mid-session gets one on first use."""
        return self.builders[-1] if self.builders else self.new()

    def sessions(self) -> Sessions:
        """The sessions that showed anything, numbered again from ``s1``."""
        out = []
        for number, builder in enumerate((b for b in self.builders if not b.empty), 1):
            records = builder.records()
            for record in records:
                record["session"] = f"s{number}"
            out.append(records)
        return out


@lru_cache(maxsize=2)
def _clean_head(head: bytes) -> list[str]:
    """The head's clean lines, made once for all the text formats that score it (callers
    must not change the list)."""
    return clean_lines(head)


LineScore = Callable[[list[str]], float]
LineParse = Callable[[list[str], Collector], None]


def text_format(name: str, description: str, score: LineScore, parse: LineParse) -> Format:
    """A format that reads cleaned text lines; ``score`` sees the head's lines only."""

    def detect(head: bytes) -> float:
        return score(_clean_head(head[:HEAD]))

    def read(data: bytes) -> Sessions:
        collector = Collector(name)
        parse(clean_lines(data), collector)
        return collector.sessions()

    return register(Format(name, description, detect, read))


def share(lines: list[str], pattern: re.Pattern[str]) -> float:
    """The share of non-empty lines that match ``pattern`` (a detection score)."""
    body = [line for line in lines if line.strip()]
    if not body:
        return 0.0
    return sum(1 for line in body if pattern.match(line)) / len(body)


WRAP_WIDTH = 60
"""A line at least this long may have been wrapped by a forum or a terminal."""


def unwrap(lines: list[str], record: Callable[[str], object]) -> list[str]:
    """Join wrapped lines back: in a format whose every record starts with a known prefix
    (FileZilla, WinSCP, server logs; ``record`` tells), a non-empty line without one that
    follows a long record is the rest of that record."""
    out: list[str] = []
    for line in lines:
        follows = bool(out) and len(out[-1]) >= WRAP_WIDTH and bool(record(out[-1]))
        if line.strip() and not record(line) and follows:
            out[-1] = f"{out[-1]} {line.strip()}"
        else:
            out.append(line)
    return out


_REPLY = re.compile(r"^(\d{3})([ -])(.*)$")


def reply_code(text: str) -> int | None:
    """The code of a reply line (``230 Logged in`` or ``211-Features``), else None."""
    match = _REPLY.match(text)
    return int(match.group(1)) if match else None


@lru_cache(maxsize=4096)
def parse_time(text: str, formats: tuple[str, ...]) -> datetime | None:
    """The first of ``formats`` that parses ``text`` (the log's local time, no zone). Cached:
    strptime is slow, and a log repeats each second's stamp on many lines."""
    if not text:
        return None
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None
