"""The kind of a client's own error, from its message (the table is ``client_errors.toml``)."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

KINDS = frozenset(
    {"timeout", "refused", "dns", "unreachable", "tls", "reset", "closed", "login", "not_found"}
)
"""The ``kind`` values of ``client.error`` besides ``error`` (the README's event table)."""


@cache
def _patterns(table: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    raw = tomllib.loads(
        resources.files("ftpdiag.importers").joinpath("client_errors.toml").read_text("utf-8")
    )
    return tuple((p["kind"], re.compile(p["match"], re.I)) for p in raw[table])


def kind_of(message: str) -> str:
    """``timeout``, ``refused``, ``dns``… for a client's error message; ``error`` if unknown."""
    for kind, pattern in _patterns("pattern"):
        if pattern.search(message):
            return kind
    return "error"


def notice_of(message: str) -> str | None:
    """The kind of a server problem a client's message says it worked around, if any."""
    return next((kind for kind, pattern in _patterns("notice") if pattern.search(message)), None)
