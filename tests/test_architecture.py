"""The sans-IO boundary: the protocol core imports neither Twisted nor structlog."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parent.parent / "ftpdiag" / "core"
PURE = [
    *CORE.glob("*.py"),
    *(CORE.parent / "rules").glob("*.py"),
    *(CORE.parent / "importers").glob("*.py"),
    *(CORE.parent / "capture").glob("*.py"),  # packets in, facts out: no sockets either
    # The report is drawn from records alone (its writer for --report-dir only writes files).
    *(CORE.parent / "report").glob("*.py"),
    CORE.parent / "replay" / "script.py",
]
FORBIDDEN = ("twisted", "structlog", "socket", "asyncio", "pyftpdlib")


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sans_io_modules_import_no_io(path: Path) -> None:
    """Core and rules modules stay pure: no networking, no reactor, no logging library."""
    tree = ast.parse(path.read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    bad = [name for name in names if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}"
