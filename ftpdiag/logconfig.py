"""The one structlog configuration of ftpdiag: shared processors, redaction, and sinks.

Only the application (the CLI, the pytest plugin) calls ``configure``; library modules just
emit through ``emit``. Each event is rendered once per sink: the coloured console for a person
and JSON lines for a file to attach to a bug report. The file is line-buffered and every
record is written with a single ``write`` of one complete line, so a crash loses nothing that
was logged and concurrent sessions never interleave within a line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import orjson
import structlog

from ftpdiag.console import ConsoleRenderer
from ftpdiag.core.facts import level_of
from ftpdiag.i18n import label

EventDict = MutableMapping[str, Any]
_SECRET_KEYS = frozenset({"password", "passwd", "pass", "secret"})
#: Fields for JSON only: a person at the console reads one line, a bug report gets them all.
JSON_ONLY_FIELDS = frozenset({"traceback"})


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Last line of defence: the core already logs PASS/ACCT as ``****``."""
    for key in _SECRET_KEYS.intersection(event_dict):
        event_dict[key] = "****"
    return event_dict


class Output(Protocol):
    """Anything records fan out to: a ``Sink``, or e.g. the per-session report writer."""

    @property
    def min_level(self) -> int: ...

    def write(self, level: int, event_dict: EventDict) -> None: ...


@dataclass
class Sink:
    """One output: a stream, a renderer, and the lowest level it shows."""

    stream: TextIO
    render: Callable[[EventDict], str]
    min_level: int
    broken: bool = False
    hidden: frozenset[str] = frozenset()

    def write(self, level: int, event_dict: EventDict) -> None:
        if level < self.min_level or self.broken:
            return
        if not self.hidden.isdisjoint(event_dict):
            event_dict = {k: v for k, v in event_dict.items() if k not in self.hidden}
        text = self.render(event_dict)
        if not text:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:
            # A full disk or a closed terminal must not stop the proxy: logging becomes best
            # effort, and the failure is said once on stderr.
            self.broken = True
            with contextlib.suppress(OSError, ValueError):
                name = getattr(self.stream, "name", "log")
                warning = label("cli.cannot_write", name=name, reason=exc)
                sys.stderr.write(label("cli.warning", message=warning) + "\n")


MAX_FIELD = 4096


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return f"{value[:MAX_FIELD]}… ({len(value) - MAX_FIELD} more characters)"
    return value


def _dumps(value: Any) -> str:
    """orjson (a sixth of the standard library's time, on every record of every command);
    the standard library for what orjson refuses, such as integers beyond 64 bits that
    hostile input can put in a field."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, default=str)


def render_json(event_dict: EventDict) -> str:
    """One JSON object per line; long strings are cut so a record stays small (one write).

    A line no longer than ``MAX_FIELD`` cannot hold a longer string: only longer lines (rare)
    are rendered a second time with their strings cut."""
    text = _dumps(event_dict)
    if len(text) <= MAX_FIELD:
        return text
    return _dumps({k: _bounded(v) for k, v in event_dict.items()})


class _UTCTimestamp:
    """``timestamp`` as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it
    (``2026-11-26T00:22:09.091085Z``), with the date and time formatted once per second
    rather than once per record: a third of structlog's cost, on every command and reply."""

    def __init__(self) -> None:
        self._cache = (-1, "")  # (second, its formatted text), replaced as one object

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        cached, text = self._cache
        if cached != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cache = (second, text)
        event_dict["timestamp"] = f"{text}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


_LEVELS = {name.lower(): value for name, value in logging.getLevelNamesMapping().items()}


class _Fanout:
    def __init__(self, sinks: list[Output]) -> None:
        self.sinks = sinks

    def __call__(self, _: Any, method: str, event_dict: EventDict) -> EventDict:
        level = _LEVELS[event_dict.get("level", method)]
        for sink in self.sinks:
            sink.write(level, event_dict)
        raise structlog.DropEvent


def configure(
    console: TextIO | None = sys.stderr,
    console_format: str = "console",
    log_file: TextIO | None = None,
    verbosity: int = 0,
    color: bool | None = None,
    outputs: Sequence[Output] = (),
    lang: str = "en",
) -> None:
    """Configure structlog once for the whole process. ``verbosity``: -1 quiet, 0, 1 verbose.
    ``outputs`` get every record after the console and the file (``--report-dir``); ``lang``
    is the language of the console's labels (the JSON lines keep their field names)."""
    sinks: list[Output] = []
    if console is not None:
        console_level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
        if console_format == "json":
            sinks.append(Sink(console, render_json, console_level))
        else:
            use_color = console.isatty() if color is None else color
            render = ConsoleRenderer(color=use_color, verbose=verbosity > 0, lang=lang)
            sinks.append(Sink(console, render, console_level, hidden=JSON_ONLY_FIELDS))
    if log_file is not None:
        sinks.append(Sink(log_file, render_json, logging.DEBUG))
    sinks.extend(outputs)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _UTCTimestamp(),
            redact,
            _Fanout(sinks),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            min((s.min_level for s in sinks), default=logging.CRITICAL)
        ),
        cache_logger_on_first_use=False,
    )
    global _logger
    _logger = structlog.get_logger("ftpdiag").bind()


def reset() -> None:
    """Back to structlog's defaults (tests that configured logging undo it with this)."""
    global _logger
    structlog.reset_defaults()
    _logger = structlog.get_logger("ftpdiag")


#: The logger of the current configuration, bound once per ``configure`` rather than resolved
#: on every record (a lazy proxy costs a bind per call); before any ``configure``, the lazy
#: proxy follows structlog's defaults.
_logger: Any = structlog.get_logger("ftpdiag")


def emit(event: str, fields: dict[str, Any]) -> None:
    """Log one fact: the single door through which the proxy's records reach structlog."""
    getattr(_logger, level_of(event, fields))(event, **fields)
