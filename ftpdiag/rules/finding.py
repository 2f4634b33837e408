"""What a check returns: the rule that fired and its evidence (shared by every check module)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ftpdiag.rules.view import SessionView


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, the reply code it concerns, and what it saw.

    ``context`` refines the catalog lookup of ``code`` (command, state tags) when the rule
    borrows the catalog's prose.
    """

    rule: str
    code: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


Check = Callable[[str, dict[str, Any], SessionView], Iterable[Finding]]
