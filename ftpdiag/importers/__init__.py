"""Importers: the logs people already have, rebuilt as the proxy's records.

Each module reads one family of formats and registers itself (:func:`register`); detection
scores the first bytes of the input with every registered format and the best score wins
(``--input NAME`` forces one). Every importer returns sessions of records in the proxy's
JSON-lines schema, so the diagnosis engine treats a pasted FileZilla log like a live session.
Binary formats (packet captures) register the same way: ``detect`` sees bytes.
"""

from __future__ import annotations

from ftpdiag.importers import (  # noqa: F401  (each module registers its format on import)
    capture,
    curl,
    filezilla,
    generic,
    jsonl,
    lftp,
    ncftp,
    python,
    servers,
    transcript,
    winscp,
)
from ftpdiag.importers.base import HEAD, Format, Sessions, formats, register

__all__ = ["Format", "Sessions", "detect", "formats", "read", "read_path", "register"]


def detect(data: bytes) -> Format | None:
    """The registered format that scores the input's head highest, or None if none fits."""
    head = data[:HEAD]
    scored = [(fmt.detect(head), index, fmt) for index, fmt in enumerate(formats().values())]
    best = max(scored, key=lambda item: (item[0], -item[1]), default=None)
    return best[2] if best is not None and best[0] > 0 else None


def read(data: bytes, name: str | None = None) -> tuple[Format, Sessions] | None:
    """Detect (or take the format called ``name``) and read the input into sessions."""
    fmt = formats()[name] if name is not None else detect(data)
    if fmt is None:
        return None
    return fmt, fmt.read(data)


def read_path(path: str, name: str | None = None) -> tuple[Format, Sessions] | None:
    """:func:`read` for a file: detection looks at its head, and a format that reads files
    itself (a capture, mapped) gets the path instead of the whole content."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD)
        fmt = formats()[name] if name is not None else detect(head)
        if fmt is None:
            return None
        if fmt.read_file is not None:
            return fmt, fmt.read_file(path)
        return fmt, fmt.read(head + handle.read())
