"""The languages of ftpdiag and the words of its own interface (console, summaries, CLI).

Knowledge is data: every label a person reads lives in ``ftpdiag/rules/labels/<lang>.toml``
under the same keys in every language (a test holds them equal), and :func:`label` is the one
lookup. The language comes from ``--lang`` or, without it, from the locale (:func:`default_lang`);
:func:`use` makes it the current one for code that has no ``lang`` of its own to pass, such as
argparse's type converters and error handler.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES: tuple[str, ...] = ("en", "vi")
FALLBACK = "en"
_CURRENT: ContextVar[str] = ContextVar("ftpdiag_lang", default=FALLBACK)


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """The language of the locale: the first non-empty of LC_ALL, LC_MESSAGES, LANG decides;
    "vi..." (``vi_VN.UTF-8``) means Vietnamese, anything else English."""
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:
            return "vi" if value.lower().startswith("vi") else FALLBACK
    return FALLBACK


def resolve(lang: str | None) -> str:
    """``lang`` when it is one of :data:`LANGUAGES`, else the locale's language."""
    return lang if lang in LANGUAGES else default_lang()


def use(lang: str) -> str:
    """Make ``lang`` the current language (see :func:`current`); returns it."""
    _CURRENT.set(lang)
    return lang


def current() -> str:
    """The language chosen by the last :func:`use` in this context (English before any)."""
    return _CURRENT.get()


@cache
def labels(lang: str) -> Mapping[str, str]:
    """``section.key`` → text for ``lang``, from ``rules/labels/<lang>.toml``."""
    raw = tomllib.loads(
        resources.files("ftpdiag.rules").joinpath("labels", f"{lang}.toml").read_text("utf-8")
    )
    return {f"{sec}.{key}": text for sec, table in raw.items() for key, text in table.items()}


def label(key: str, lang: str | None = None, **values: Any) -> str:
    """The text of ``key`` in ``lang`` (default: the current language) with ``{name}`` fields
    filled from ``values``; English when the language lacks the key (a test forbids that)."""
    chosen = lang if lang in LANGUAGES else current()
    template = labels(chosen).get(key) or labels(FALLBACK)[key]
    return template.format(**values) if values else template


def word(table: str, value: object, lang: str | None = None) -> str:
    """A value the log carries in English (a ``side``, a close ``reason`` …) in the words of
    ``[table]`` for ``lang``; the value itself when the table does not know it."""
    chosen = lang if lang in LANGUAGES else current()
    return labels(chosen).get(f"{table}.{value}", str(value))


def error_line(message: str, lang: str | None = None) -> str:
    """``ftpdiag: error: …`` (``ftpdiag: lỗi: …``): how ftpdiag reports its own errors."""
    return label("cli.error", lang, message=message)


@cache
def template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching what ``template`` renders, one group per field."""
    escaped = re.escape(template)
    return re.compile(re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>.+?)", escaped), re.DOTALL)


def reword(section: str, text: str, lang: str | None = None) -> str:
    """An English message someone else wrote (argparse's errors, the proxy's logged refusal
    reasons) in ``lang``: matched against the English templates of ``[section]`` and said again
    with the language's; a nested ``{message}`` is reworded too; unknown text stays as it is."""
    for key, template in labels(FALLBACK).items():
        match = (
            template_pattern(template).fullmatch(text) if key.startswith(section + ".") else None
        )
        if match:
            values = match.groupdict()
            if "message" in values:
                values["message"] = reword(section, values["message"], lang)
            return label(key, lang, **values)
    return text


def lang_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--lang`` in a command line, read before argparse runs so that the
    parser's help and error messages are already in that language."""
    for index, arg in enumerate(argv):
        if arg == "--lang" and index + 1 < len(argv):
            return argv[index + 1] if argv[index + 1] in LANGUAGES else None
        if arg.startswith("--lang="):
            value = arg.split("=", 1)[1]
            return value if value in LANGUAGES else None
    return None


def add_lang_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--lang en|vi`` option every command has (default: the locale's language)."""
    parser.add_argument("--lang", choices=LANGUAGES, default=None, help=label("help.lang"))
