"""Commands and replies as values, and the assembly of multi-line replies.

A multi-line reply ends only on a line that starts with the *first* line's code followed by a
space (RFC 959 §4.2: "the last line will begin with the same code, followed immediately by
Space"). Inner lines that look like other codes do not end it; they are kept as evidence
because clients that end on any ``ddd `` line (Twisted's, some embedded ones) would split
the reply there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ftpdiag.core.framing import line_text

SECRET_VERBS = frozenset({"PASS", "ACCT"})
REDACTED = "****"
# "PASS secret" anywhere in a text (a quoted command line, a message), up to the end of the
# line or a quote; and the password of a URL's user information (ftp://user:secret@host).
_SECRET_IN_TEXT = re.compile(r"(?i)\b(PASS|ACCT)([ \t]+)[^\r\n'\"\\]+")
_SECRET_IN_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")


def redact_secrets(text: str) -> str:
    """``text`` with every PASS/ACCT argument and URL password replaced by ``****``: for
    free text that may quote input (an exception's message, a pasted log), where the
    structured redaction of ``Command`` cannot reach."""
    text = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return redact_url_passwords(text)


def redact_url_passwords(text: str) -> str:
    """``text`` with the password of every URL's user information (ftp://user:secret@host)
    replaced by ``****``."""
    return _SECRET_IN_URL.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


def is_standard_code(code: int) -> bool:
    """A reply code in the ranges the RFCs define: 1xx–5xx (RFC 959 §4.2), 6xx (RFC 2228)."""
    return 100 <= code <= 699


@dataclass(frozen=True, slots=True)
class Command:
    """One client command; ``arg`` of PASS/ACCT never appears in ``repr`` or logs."""

    verb: str
    arg: str = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def loggable_arg(self) -> str:
        return REDACTED if self.verb in SECRET_VERBS and self.arg else self.arg

    def __repr__(self) -> str:
        return f"Command({self.verb!r}, {self.loggable_arg!r})"


def parse_command(raw: bytes) -> Command:
    """Split a command line into an upper-case verb and its argument (RFC 959 §5.3)."""
    text = line_text(raw)
    verb, _, arg = text.lstrip().partition(" ")
    return Command(verb.upper(), arg, raw)


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete server reply: its code, its lines' text and the exact bytes received."""

    code: int
    lines: tuple[str, ...]
    raw: bytes
    mismatched_codes: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        """The message without the code prefixes, lines joined by newlines."""
        if len(self.lines) == 1:
            return self.lines[0][4:]
        inner = [self.lines[0][4:], *self.lines[1:-1], self.lines[-1][4:]]
        return "\n".join(inner)

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200


@dataclass(frozen=True, slots=True)
class MalformedReply:
    """A line from the server that is not a reply (no three-digit code)."""

    raw: bytes

    @property
    def text(self) -> str:
        return line_text(self.raw)


@dataclass(frozen=True, slots=True)
class OversizedReply:
    """A multi-line reply that grew past the limit without its closing line."""

    code: int
    raw: bytes
    limit: int


def _code_of(text: str) -> int | None:
    if len(text) >= 3 and text[:3].isdigit() and (len(text) == 3 or text[3] in " -"):
        return int(text[:3])
    return None


class ReplyAssembler:
    """Collects server lines into replies; bounded by ``max_bytes`` per reply."""

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.max_bytes = max_bytes
        self._code: int | None = None
        self._lines: list[str] = []
        self._raw = bytearray()
        self._mismatched: list[int] = []

    @property
    def in_progress(self) -> bool:
        return self._code is not None

    def progress(self) -> dict[str, object]:
        """What an unfinished multi-line reply has shown so far (for a diagnosis)."""
        return {
            "code": self._code,
            "lines": len(self._lines),
            "mismatched_codes": list(self._mismatched),
        }

    def feed(self, raw: bytes) -> Reply | MalformedReply | OversizedReply | None:
        text = line_text(raw)
        if self._code is None:
            code = _code_of(text)
            if code is None:
                return MalformedReply(raw)
            if len(text) > 3 and text[3] == "-":
                self._code, self._lines, self._raw = code, [text], bytearray(raw)
                return None
            return Reply(code, (text,), raw)
        self._lines.append(text)
        self._raw += raw
        if text.startswith(f"{self._code} ") or text == str(self._code):
            reply = Reply(self._code, tuple(self._lines), bytes(self._raw), tuple(self._mismatched))
            self._reset()
            return reply
        other = _code_of(text)
        if other is not None and len(text) > 3 and text[3] == " ":
            self._mismatched.append(other)
        if len(self._raw) > self.max_bytes:
            oversized = OversizedReply(self._code, bytes(self._raw), self.max_bytes)
            self._reset()
            return oversized
        return None

    def _reset(self) -> None:
        self._code, self._lines, self._raw, self._mismatched = None, [], bytearray(), []
