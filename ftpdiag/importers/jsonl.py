"""ftpdiag's own JSON-lines log (``--log-file``): read back as it was written."""

from __future__ import annotations

import json

from ftpdiag.importers.base import Format, Sessions, register
from ftpdiag.importers.paste import decode


def parse_lines(data: bytes) -> tuple[list[dict[str, object]], list[int]]:
    """The records, and the numbers of the lines that are not JSON objects."""
    records, bad = [], []
    for number, line in enumerate(decode(data).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            bad.append(number)
    return records, bad


def _detect(head: bytes) -> float:
    lines = [line for line in decode(head).splitlines() if line.strip()][:20]
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "event" in value:
            return 1.0
    return 0.0


def _read(data: bytes) -> Sessions:
    return [parse_lines(data)[0]]


JSONL = register(Format("jsonl", "ftpdiag's JSON-lines log (--log-file)", _detect, _read))
