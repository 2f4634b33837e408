"""What a check returns: the rule that fired and its evidence (shared by every check module)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ftpdiag.rules.view import SessionView


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, the reply code it concerns, and what it saw.

    ``context`` refines the catalog lookup of ``code`` (command, state tags) when the rule
    borrows the catalog's prose. ``overrides``: the finding explains its reply better than any
    other rule can (a server's own message, known word for word), so the engine drops the
    other findings of the same code: one fault, one headline.
    """

    rule: str
    code: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    overrides: bool = False


Check = Callable[[str, dict[str, Any], SessionView], Iterable[Finding]]

C = TypeVar("C", bound=Check)


def handles(*events: str) -> Callable[[C], C]:
    """The facts a check looks at: the engine calls it for these events only, so a check
    costs nothing on the many facts it ignores (every ``command``, most ``reply`` records).
    A test holds each list equal to the events the check's body compares ``event`` with."""

    def mark(check: C) -> C:
        check.handles = frozenset(events)  # type: ignore[attr-defined]
        return check

    return mark


def by_event(checks: Iterable[Check]) -> dict[str, tuple[Check, ...]]:
    """Event name → the checks that handle it, in the given order."""
    routes: dict[str, list[Check]] = {}
    for check in checks:
        for event in check.handles:  # type: ignore[attr-defined]
            routes.setdefault(event, []).append(check)
    return {event: tuple(found) for event, found in routes.items()}
