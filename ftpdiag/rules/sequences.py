"""The command–reply table of RFC 959 §5.4 (and its extensions), loaded from data."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources


@cache
def _table() -> dict[str, frozenset[int]]:
    text = resources.files("ftpdiag.rules").joinpath("sequences.toml").read_text("utf-8")
    return {verb: frozenset(codes) for verb, codes in tomllib.loads(text)["replies"].items()}


def allowed_replies(verb: str) -> frozenset[int] | None:
    """The replies ``verb`` may receive, or None for a command the table does not cover."""
    return _table().get(verb.upper())
