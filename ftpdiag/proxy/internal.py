"""What a bug of ftpdiag says about itself: the ``proxy.internal_error`` fields.

A report must let a maintainer find the bug without the user's help: the exception's type and
message (the name of a missing file, the key that was absent), the innermost frame of
ftpdiag's own code (a frame of the standard library, such as ``pathlib.py:1044``, says nothing
about which of our calls failed), and the whole traceback for the JSON log. Messages can quote
input, so PASS/ACCT arguments and URL passwords are scrubbed from every text.
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

from ftpdiag.core.messages import redact_secrets

_PACKAGE = __name__.split(".")[0]


def _innermost_own_frame(tb: TracebackType | None) -> str:
    """``module:line in function`` of the deepest frame in ftpdiag's code, else the deepest."""
    own = last = None
    while tb is not None:
        frame = tb.tb_frame
        module = str(frame.f_globals.get("__name__", "?"))
        where = f"{module}:{tb.tb_lineno} in {frame.f_code.co_name}"
        last = where
        if module == _PACKAGE or module.startswith(_PACKAGE + "."):
            own = where
        tb = tb.tb_next
    return own or last or "?"


def describe(exc: BaseException, tb: TracebackType | None = None) -> dict[str, Any]:
    """The fields of ``proxy.internal_error`` for ``exc`` (its own traceback by default)."""
    tb = tb if tb is not None else exc.__traceback__
    lines = traceback.format_exception(type(exc), exc, tb)
    return {
        "error": type(exc).__name__,
        "message": redact_secrets(str(exc)),
        "where": _innermost_own_frame(tb),
        "traceback": redact_secrets("".join(lines)),  # JSON log only: logconfig.JSON_ONLY_FIELDS
    }
