"""Secrets out of the records before anything is drawn from them.

The proxy logs PASS and ACCT as ``****`` already; a log from elsewhere (an older ftpdiag, a
hand-edited file, another tool's importer) may not. A report is a file people attach to bug
reports, so it must never hold more than the log did, and preferably less: every clear secret
found in the records (a PASS/ACCT argument, a field named like a password) becomes ``****``,
and so does every other occurrence of that same string anywhere; free texts also lose what
``redact_secrets`` finds in them (a quoted PASS command, the password part of a URL).
"""

from __future__ import annotations

import re
from typing import Any

from ftpdiag.core.messages import REDACTED as MASK
from ftpdiag.core.messages import SECRET_VERBS as _SECRET_VERBS
from ftpdiag.core.messages import redact_secrets

_SECRET_KEY = re.compile(r"(^|_)(pass|passwd|password|secret|pwd)($|_)", re.IGNORECASE)
#: Shorter clear secrets are masked where they stand but not searched for elsewhere: replacing
#: every "ab" in a transcript would make it unreadable and reveal the secret by its holes.
MIN_SEARCHED = 3


def _collect(value: Any, key: str, found: set[str]) -> None:
    if isinstance(value, dict):
        if str(value.get("verb", "")).upper() in _SECRET_VERBS:
            _add(value.get("arg"), found)
        if str(value.get("command", "")).upper() in _SECRET_VERBS:
            _add(value.get("arg"), found)
        for k, v in value.items():
            _collect(v, str(k), found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, key, found)
    elif isinstance(value, str) and _SECRET_KEY.search(key):
        _add(value, found)


def _add(value: Any, found: set[str]) -> None:
    if isinstance(value, str) and value and value != MASK:
        found.add(value)


def _scrub(value: Any, key: str, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        masked = str(value.get("verb", value.get("command", ""))).upper() in _SECRET_VERBS
        return {
            k: MASK if masked and k == "arg" and v else _scrub(v, str(k), secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item, key, secrets) for item in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and value:
            return MASK
        value = redact_secrets(value)  # "PASS x" quoted in a text, ftp://user:x@host
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    return value


def redact_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` with every clear secret replaced by ``****``."""
    found: set[str] = set()
    for record in records:
        _collect(record, "", found)
    # Longest first, so that a secret containing another is masked whole.
    secrets = sorted((s for s in found if len(s) >= MIN_SEARCHED), key=len, reverse=True)
    return [_scrub(record, "", secrets) for record in records]
