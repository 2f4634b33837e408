"""The vocabulary of facts (ftpdiag/core/facts.py) holds every producer and consumer to it.

Fact names and fields are strings; without this test a renamed event or field would silently
change what a check sees, what the console renders or at which level a record is logged.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftpdiag import console
from ftpdiag.core.facts import (
    BY_NAME,
    COMMON_FIELDS,
    FACTS,
    TABLE_HEAD,
    level_of,
    markdown_table,
)
from ftpdiag.rules import view
from ftpdiag.rules.checks import CHECKS, FALLBACK

PACKAGE = Path(__file__).parent.parent / "ftpdiag"
README = PACKAGE.parent / "README.md"
EMITTERS = {"fact", "_fact", "emit", "sink"}


def _emitted() -> Iterator[tuple[str, str, set[str] | None]]:
    """(where, event, keyword fields or None when ``**`` spreads some) of every literal call
    ``_fact("x", ...)``, ``emit("x", {...})`` or ``sink("x", {...})`` in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in EMITTERS:
                continue
            # The event is the first string argument: ``_fact(ts, "x", ...)`` in the capture.
            first = next((a for a in node.args[:2] if isinstance(a, ast.Constant)), None)
            if first is None or not isinstance(first.value, str):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            fields: set[str] | None = {k.arg for k in node.keywords if k.arg is not None}
            if any(k.arg is None for k in node.keywords):
                fields = None
            if len(node.args) > 1 and node.args[0] is first:
                second = node.args[1]
                if isinstance(second, ast.Dict) and all(
                    isinstance(k, ast.Constant) for k in second.keys
                ):
                    fields = {str(k.value) for k in second.keys if isinstance(k, ast.Constant)}
                else:
                    fields = None
            yield where, first.value, fields


def test_the_vocabulary_names_each_fact_once() -> None:
    """No two entries share a name, and every fact has fields' names and a doc."""
    names = [spec.name for spec in FACTS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert all(spec.doc and spec.fields for spec in FACTS)


def test_every_emitted_fact_is_in_the_vocabulary_with_its_fields() -> None:
    """Each literal emission in ftpdiag/ names a known fact and only its declared fields."""
    found = list(_emitted())
    assert len(found) > 30, "the scan found too few emissions to be looking in the right place"
    problems = []
    for where, event, fields in found:
        spec = BY_NAME.get(event)
        if spec is None:
            problems.append(f"{where}: `{event}` is not in ftpdiag/core/facts.py")
        elif fields is not None and not fields <= {*spec.fields, *COMMON_FIELDS}:
            extra = sorted(fields - set(spec.fields) - set(COMMON_FIELDS))
            problems.append(f"{where}: `{event}` has undeclared fields {extra}")
    assert not problems, "\n".join(problems)


def test_every_check_handles_known_facts() -> None:
    """A check's ``@handles`` names only facts of the vocabulary (a typo would never fire)."""
    problems = [
        f"{check.__name__} handles unknown `{event}`"
        for check in (*CHECKS, FALLBACK)
        for event in check.handles  # type: ignore[attr-defined]
        if event not in BY_NAME
    ]
    assert not problems, "\n".join(problems)


def _keys_of(tree: ast.AST, name: str) -> set[str]:
    """The keys read from the mapping called ``name``: ``name["k"]`` and ``name.get("k")``."""
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and getattr(node.value, "id", None) == name
            and isinstance(node.slice, ast.Constant)
        ):
            keys.add(str(node.slice.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and getattr(node.func.value, "id", None) == name
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(str(node.args[0].value))
    return keys


def test_every_check_reads_fields_its_facts_have() -> None:
    """A check reads only fields that one of its ``@handles`` facts declares: a renamed
    field fails here, instead of a rule that silently stops firing."""
    problems = []
    for check in (*CHECKS, FALLBACK):
        handled = check.handles  # type: ignore[attr-defined]
        declared = {name for event in handled for name in BY_NAME[event].fields}
        tree = ast.parse(inspect.getsource(check).strip())
        extra = _keys_of(tree, "f") - declared - set(COMMON_FIELDS)
        if extra:
            problems.append(f"{check.__name__} reads {sorted(extra)}, not in {sorted(handled)}")
    assert not problems, "\n".join(problems)


def test_internal_error_fields_are_declared() -> None:
    """``proxy.internal_error`` is built by ``describe`` (spread into the record): its keys."""
    from ftpdiag.proxy.internal import describe

    try:
        raise KeyError("x")
    except KeyError as exc:
        fields = describe(exc)
    assert set(fields) <= set(BY_NAME["proxy.internal_error"].fields)


def _compared_events(source: str) -> set[str]:
    """The string constants an ``event == "..."`` comparison tests in ``source``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and getattr(node.left, "id", None) == "event":
            for right in node.comparators:
                if isinstance(right, ast.Constant) and isinstance(right.value, str):
                    found.add(right.value)
    return found


def test_the_view_observes_known_facts() -> None:
    """``SessionView`` compares events with facts of the vocabulary and reads their fields."""
    source = inspect.getsource(view.SessionView)
    events = _compared_events(source)
    assert "reply" in events and "transfer.end" in events
    assert not events - set(BY_NAME), f"unknown events in view.py: {sorted(events - set(BY_NAME))}"
    declared = {name for event in events for name in BY_NAME[event].fields}
    extra = _keys_of(ast.parse(source), "fields") - declared
    assert not extra, f"view.py reads fields no observed fact declares: {sorted(extra)}"


def _console_methods() -> dict[str, str]:
    """Renderer method → the fact it renders, for every ``_<event>`` method."""
    by_method = {"_" + spec.name.replace(".", "_"): spec.name for spec in FACTS}
    helpers = {"_generic"}
    methods = [
        name
        for name, _ in inspect.getmembers(console.ConsoleRenderer, inspect.isfunction)
        if name.startswith("_") and not name.startswith("__") and name not in helpers
    ]
    unknown = [m for m in methods if m not in by_method]
    assert not unknown, f"ConsoleRenderer methods that render no known fact: {unknown}"
    return {m: by_method[m] for m in methods}


def _keys_read(function: object) -> set[str]:
    """The keys a renderer method reads from its event: ``ev["k"]`` and ``ev.get("k")``."""
    return _keys_of(ast.parse(inspect.getsource(function).strip().replace("\n    ", "\n")), "ev")


def test_the_console_renders_known_facts_and_fields() -> None:
    """Each ``_<event>`` method of the console renderer reads only its fact's fields."""
    methods = _console_methods()
    assert "_reply" in methods
    problems = []
    for method, event in methods.items():
        keys = _keys_read(getattr(console.ConsoleRenderer, method))
        extra = keys - set(BY_NAME[event].fields) - set(COMMON_FIELDS)
        if extra:
            problems.append(f"ConsoleRenderer.{method} reads {sorted(extra)} not in `{event}`")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("spec", FACTS, ids=lambda s: s.name)
def test_log_levels_follow_the_vocabulary(spec: object) -> None:
    """``level_of`` gives each fact the level facts.py declares (diagnoses by severity)."""
    assert hasattr(spec, "level") and hasattr(spec, "name")
    if spec.level == "severity":
        assert level_of(spec.name, {"severity": "error"}) == "error"
        assert level_of(spec.name, {"severity": "info"}) == "info"
    else:
        assert level_of(spec.name, {}) == spec.level


def _readme_rows() -> dict[str, str]:
    text = README.read_text()
    assert TABLE_HEAD in text, "README.md has no event table headed like facts.TABLE_HEAD"
    table = text[text.index(TABLE_HEAD) :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name = line.split("`")[1]
        rows[name] = line
    return rows


def test_the_readme_event_table_is_the_vocabulary() -> None:
    """README's event table is ``markdown_table()``; a difference names the event."""
    rows = _readme_rows()
    wanted = {spec.name: spec.row() for spec in FACTS}
    problems = [f"README lacks `{n}`" for n in wanted if n not in rows]
    problems += [f"README has `{n}`, facts.py does not" for n in rows if n not in wanted]
    problems += [
        f"README row of `{n}` differs:\n  README:   {rows[n]}\n  facts.py: {wanted[n]}"
        for n in wanted
        if n in rows and rows[n] != wanted[n]
    ]
    hint = "\n(regenerate it with: python -m ftpdiag.core.facts)"
    assert not problems, "\n".join(problems) + hint
    assert markdown_table() in README.read_text(), "README's rows are out of facts.py order" + hint


def test_the_engine_records_carry_their_declared_fields() -> None:
    """A ``diagnosis`` and the ``session.summary`` have exactly the fields facts.py names."""
    from ftpdiag.rules.engine import Diagnoser

    engine = Diagnoser()
    engine.process("session.open", {"client": "127.0.0.1:1", "upstream": "127.0.0.1:2"})
    out = engine.process("reply", {"code": 530, "text": "Login incorrect.", "command": "PASS"})
    out += engine.process("session.close", {"reason": "client closed", "duration_ms": 1.0})
    records = {event: fields for event, fields in out}
    for event in ("diagnosis", "session.summary"):
        assert set(records[event]) == set(BY_NAME[event].fields), event
