"""The reply-code catalog: loader, validator and matcher (schema: docs/catalog.md).

Reply-code knowledge lives in ``ftpdiag/rules/catalog/<lang>.toml``; this module is the only
code that parses those files. Everything is validated at load time and a broken document
raises :class:`CatalogError` with the file, the code and the field at fault.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from ftpdiag.core.facts import SEVERITY_ORDER, Severity
from ftpdiag.core.messages import is_standard_code
from ftpdiag.i18n import LANGUAGES, default_lang

__all__ = [
    "HEADING_KEYS",
    "LANGUAGES",
    "STATE_TAGS",
    "Catalog",
    "CatalogError",
    "Explanation",
    "Severity",
    "default_lang",
    "load_catalog",
    "load_catalog_file",
]


SEVERITIES: frozenset[str] = frozenset(SEVERITY_ORDER)
STATE_TAGS: frozenset[str] = frozenset(
    {
        "greeting",
        "before_login",
        "logged_in",
        "tls",
        "prot_p",
        "passive",
        "active",
        "transfer",
        "abort",
    }
)
HEADING_KEYS: tuple[str, ...] = (
    "class",
    "description",
    "when",
    "remedy",
    "differences",
    "which",
    "references",
    "next",
    "tells",
)
CLASS_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6")
GROUP_KEYS: tuple[str, ...] = ("0", "1", "2", "3", "5")
PROSE_FIELDS: tuple[str, ...] = ("title", "description", "when", "remedy")
GENERIC_PLACEHOLDERS: frozenset[str] = frozenset({"class", "group", "code"})

_CODE_FIELDS = frozenset({"code", "severity", "standard", "references", "variant", *PROSE_FIELDS})
_CODE_REQUIRED = frozenset(_CODE_FIELDS - {"variant"})
_VARIANT_FIELDS = frozenset({"key", "after", "state", "text", "severity", *PROSE_FIELDS})
_META_TABLES = (
    "headings",
    "classes",
    "class_tells",
    "class_next",
    "groups",
    "nonstandard",
    "generic",
)
_VERB_RE = re.compile(r"[A-Z]{3,4}")
_KEY_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s")


class CatalogError(Exception):
    """A catalog document is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """What one reply code means, for one language, after variant selection."""

    code: int
    lang: str
    title: str
    description: str
    when: str
    remedy: str
    severity: Severity
    references: tuple[str, ...]
    standard: bool
    known: bool
    variant: str | None
    reply_class: str
    group: str


@dataclass(frozen=True, slots=True)
class _Variant:
    key: str
    after: frozenset[str]
    state: frozenset[str]
    text: re.Pattern[str] | None
    overrides: Mapping[str, str]

    @property
    def specificity(self) -> int:
        return (1 if self.after else 0) + len(self.state) + (1 if self.text is not None else 0)

    def matches(self, after: str | None, state: frozenset[str], text: str) -> bool:
        if self.after and (after is None or after not in self.after):
            return False
        if not self.state <= state:
            return False
        return self.text is None or self.text.search(text) is not None


@dataclass(frozen=True, slots=True)
class _Entry:
    code: int
    title: str
    description: str
    when: str
    remedy: str
    severity: Severity
    standard: bool
    references: tuple[str, ...]
    variants: tuple[_Variant, ...]


def select_variant(
    variants: Sequence[_Variant], after: str | None, state: frozenset[str], text: str
) -> _Variant | None:
    """Return the most specific matching variant; ties go to the first in file order."""
    best: _Variant | None = None
    for variant in variants:
        if variant.matches(after, state, text) and (
            best is None or variant.specificity > best.specificity
        ):
            best = variant
    return best


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (a title from a description)."""
    return _SENTENCE_END_RE.split(text.strip(), maxsplit=1)[0]


def _normalize_command(after: str | None) -> str | None:
    if after is None:
        return None
    words = after.split()
    return words[0].upper() if words else None


class Catalog:
    """One language's reply-code knowledge, validated; use :func:`load_catalog` to get one."""

    lang: str
    headings: Mapping[str, str]

    def __init__(self, document: Mapping[str, Any], source: str, lang: str | None = None) -> None:
        self.source = source
        meta = _require_table(document, "meta", source)
        doc_lang = _require_str(meta, "lang", f"{source}: [meta]")
        if lang is not None and doc_lang != lang:
            raise CatalogError(f"{source}: [meta] lang is {doc_lang!r}, expected {lang!r}")
        self.lang = doc_lang
        tables = {name: _require_table(meta, name, f"{source}: [meta]") for name in _META_TABLES}
        self.headings = _string_table(
            tables["headings"], HEADING_KEYS, f"{source}: [meta.headings]"
        )
        self.classes = _string_table(tables["classes"], CLASS_KEYS, f"{source}: [meta.classes]")
        self.tells = _string_table(
            tables["class_tells"], CLASS_KEYS, f"{source}: [meta.class_tells]"
        )
        self.next = _string_table(tables["class_next"], CLASS_KEYS, f"{source}: [meta.class_next]")
        self.groups = _string_table(tables["groups"], GROUP_KEYS, f"{source}: [meta.groups]")
        nonstandard, where = tables["nonstandard"], f"{source}: [meta.nonstandard]"
        self.nonstandard_title = _require_str(nonstandard, "title", where)
        # The marker of a code in 100..699 that no RFC defines (231, 430 …); the title is the
        # class label of the Winsock codes outside that range.
        self.nonstandard_marker = (
            _require_str(nonstandard, "marker", where)
            if "marker" in nonstandard
            else self.nonstandard_title
        )
        generic = _string_table(tables["generic"], PROSE_FIELDS, f"{source}: [meta.generic]")
        for field, template in generic.items():
            for name in _PLACEHOLDER_RE.findall(template):
                if name not in GENERIC_PLACEHOLDERS:
                    raise CatalogError(
                        f"{source}: [meta.generic] field {field!r}: unknown placeholder "
                        f"{{{name}}} (allowed: {{class}}, {{group}}, {{code}})"
                    )
        self.generic = generic
        raw_codes = document.get("code")
        if not isinstance(raw_codes, list) or not raw_codes:
            raise CatalogError(f"{source}: missing or empty [[code]] array")
        entries: dict[int, _Entry] = {}
        for index, raw in enumerate(raw_codes):
            entry = _parse_entry(raw, f"{source}: [[code]] #{index + 1}", source)
            if entry.code in entries:
                raise CatalogError(f"{source}: code {entry.code}: duplicate code")
            entries[entry.code] = entry
        self._entries = MappingProxyType(entries)

    @classmethod
    def from_path(cls, path: str | Path, lang: str | None = None) -> Catalog:
        """Load and validate a catalog file from ``path`` (``lang`` checks ``[meta] lang``)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read catalog: {exc.strerror}") from exc
        return cls.from_bytes(data, str(path), lang)

    @classmethod
    def from_bytes(cls, data: bytes, source: str, lang: str | None = None) -> Catalog:
        """Parse and validate a catalog document given as TOML bytes."""
        try:
            document = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CatalogError(f"{source}: not valid UTF-8: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{source}: invalid TOML: {exc}") from exc
        return cls(document, source, lang)

    # -- queries -----------------------------------------------------------------------------

    def codes(self) -> list[int]:
        """All codes in the catalog, sorted."""
        return sorted(self._entries)

    def variants(self, code: int) -> list[str]:
        """The variant keys of ``code`` in file order (empty for unknown codes)."""
        entry = self._entries.get(code)
        return [] if entry is None else [variant.key for variant in entry.variants]

    def variant_conditions(
        self, code: int
    ) -> list[tuple[str, tuple[str, ...], tuple[str, ...], str]]:
        """``(key, after, state, text)`` for each variant of ``code``, for parity checks."""
        entry = self._entries.get(code)
        if entry is None:
            return []
        return [
            (
                v.key,
                tuple(sorted(v.after)),
                tuple(sorted(v.state)),
                "" if v.text is None else v.text.pattern,
            )
            for v in entry.variants
        ]

    def class_name(self, code: int) -> str:
        """Localized class name from the first digit, or the non-standard label."""
        if not is_standard_code(code):
            return self.nonstandard_title
        return self.classes.get(str(code)[0], self.nonstandard_title)

    def group_name(self, code: int) -> str:
        """Localized function-group name from the second digit ("" if none)."""
        if not is_standard_code(code):
            return ""
        return self.groups.get(str(code)[1], "")

    def class_tells(self, code: int) -> str:
        """What a reply of this code's class tells the client (one sentence)."""
        if is_standard_code(code) and str(code)[0] in self.tells:
            return self.tells[str(code)[0]]
        entry = self._entries.get(code)
        return "" if entry is None else first_sentence(entry.description)

    def class_next(self, code: int) -> str:
        """Who acts next after a reply of this code's class (one sentence)."""
        if is_standard_code(code) and str(code)[0] in self.next:
            return self.next[str(code)[0]]
        entry = self._entries.get(code)
        return "" if entry is None else first_sentence(entry.remedy)

    def explain(
        self,
        code: int,
        after: str | None = None,
        state: frozenset[str] = frozenset(),
        text: str = "",
    ) -> Explanation:
        """Explain ``code`` given the command it answers, the session state and reply text."""
        if isinstance(code, bool) or not isinstance(code, int) or code < 100:
            raise ValueError(f"not a reply code: {code!r} (expected an integer >= 100)")
        reply_class = self.class_name(code)
        group = self.group_name(code)
        entry = self._entries.get(code)
        if entry is None:
            return self._generic(code, reply_class, group)
        variant = select_variant(entry.variants, _normalize_command(after), state, text)
        fields: dict[str, str] = {
            "title": entry.title,
            "description": entry.description,
            "when": entry.when,
            "remedy": entry.remedy,
            "severity": entry.severity,
        }
        if variant is not None:
            fields.update(variant.overrides)
        return Explanation(
            code=code,
            lang=self.lang,
            title=fields["title"],
            description=fields["description"],
            when=fields["when"],
            remedy=fields["remedy"],
            severity=cast(Severity, fields["severity"]),
            references=entry.references,
            standard=entry.standard,
            known=True,
            variant=None if variant is None else variant.key,
            reply_class=reply_class,
            group=group,
        )

    def _generic(self, code: int, reply_class: str, group: str) -> Explanation:
        values = {"class": reply_class, "group": group or "?", "code": str(code)}

        def fill(template: str) -> str:
            return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)

        severity: Severity = "warning"
        if is_standard_code(code):
            digit = str(code)[0]
            severity = "warning" if digit == "4" else "error" if digit == "5" else "info"
        return Explanation(
            code=code,
            lang=self.lang,
            title=fill(self.generic["title"]),
            description=fill(self.generic["description"]),
            when=fill(self.generic["when"]),
            remedy=fill(self.generic["remedy"]),
            severity=severity,
            references=("RFC 959 §4.2",),
            standard=False,
            known=False,
            variant=None,
            reply_class=reply_class,
            group=group,
        )


# -- validation helpers ----------------------------------------------------------------------


def _require_table(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: missing table {name!r}")
    return cast(Mapping[str, Any], value)


def _require_str(table: Mapping[str, Any], name: str, where: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: field {name!r} must be a non-empty string")
    return value


def _string_table(table: Mapping[str, Any], keys: Sequence[str], where: str) -> Mapping[str, str]:
    missing = [key for key in keys if key not in table]
    if missing:
        raise CatalogError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")
    extra = sorted(set(table) - set(keys))
    if extra:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(repr(k) for k in extra)}")
    return MappingProxyType({key: _require_str(table, key, where) for key in keys})


def _str_list(value: object, where: str, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CatalogError(f"{where}: field {field!r} must be a list of strings")
    return cast(list[str], value)


def _parse_entry(raw: object, where: str, source: str) -> _Entry:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a table")
    code = raw.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise CatalogError(f"{where}: field 'code' must be an integer")
    where = f"{source}: code {code}"
    unknown = sorted(set(raw) - _CODE_FIELDS)
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(repr(k) for k in unknown)}")
    missing = sorted(_CODE_REQUIRED - set(raw))
    if missing:
        raise CatalogError(f"{where}: missing field(s) {', '.join(repr(k) for k in missing)}")
    standard = raw["standard"]
    if not isinstance(standard, bool):
        raise CatalogError(f"{where}: field 'standard' must be true or false")
    if standard and not is_standard_code(code):
        raise CatalogError(f"{where}: field 'code': standard codes are 3 digits, 100..699")
    if code < 100:
        raise CatalogError(f"{where}: field 'code': reply codes have at least 3 digits")
    prose = {field: _require_str(raw, field, where) for field in PROSE_FIELDS}
    severity = _severity(raw["severity"], where)
    references = _str_list(raw["references"], where, "references")
    if any(not ref.strip() for ref in references):
        raise CatalogError(f"{where}: field 'references' has an empty entry")
    raw_variants = raw.get("variant", [])
    if not isinstance(raw_variants, list):
        raise CatalogError(f"{where}: field 'variant' must be an array of tables")
    variants: list[_Variant] = []
    for index, raw_variant in enumerate(raw_variants):
        variant = _parse_variant(raw_variant, f"{where}: variant #{index + 1}")
        if any(v.key == variant.key for v in variants):
            raise CatalogError(f"{where}: variant {variant.key!r}: duplicate key")
        variants.append(variant)
    return _Entry(
        code=code,
        title=prose["title"],
        description=prose["description"],
        when=prose["when"],
        remedy=prose["remedy"],
        severity=severity,
        standard=standard,
        references=tuple(references),
        variants=tuple(variants),
    )


def _severity(value: object, where: str) -> Severity:
    if not isinstance(value, str) or value not in SEVERITIES:
        raise CatalogError(
            f"{where}: field 'severity' must be one of info, warning, error (got {value!r})"
        )
    return cast(Severity, value)


def _parse_variant(raw: object, where: str) -> _Variant:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a table")
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise CatalogError(f"{where}: field 'key' must be a lower-case dashed name (got {key!r})")
    where = where.rsplit(": variant", 1)[0] + f": variant {key!r}"
    unknown = sorted(set(raw) - _VARIANT_FIELDS)
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(repr(k) for k in unknown)}")
    after = _str_list(raw.get("after", []), where, "after")
    for verb in after:
        if not _VERB_RE.fullmatch(verb):
            raise CatalogError(
                f"{where}: field 'after': {verb!r} is not an upper-case FTP command verb"
            )
    state = _str_list(raw.get("state", []), where, "state")
    for tag in state:
        if tag not in STATE_TAGS:
            raise CatalogError(
                f"{where}: field 'state': unknown tag {tag!r} "
                f"(allowed: {', '.join(sorted(STATE_TAGS))})"
            )
    text = raw.get("text", "")
    if not isinstance(text, str):
        raise CatalogError(f"{where}: field 'text' must be a string")
    pattern: re.Pattern[str] | None = None
    if text:
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            raise CatalogError(f"{where}: field 'text': invalid regex: {exc}") from exc
    if not (after or state or pattern):
        raise CatalogError(f"{where}: needs at least one condition (after, state or text)")
    overrides: dict[str, str] = {}
    for field in PROSE_FIELDS:
        if field in raw:
            overrides[field] = _require_str(raw, field, where)
    if "severity" in raw:
        overrides["severity"] = _severity(raw["severity"], where)
    return _Variant(
        key=key,
        after=frozenset(after),
        state=frozenset(state),
        text=pattern,
        overrides=MappingProxyType(overrides),
    )


# -- public loaders --------------------------------------------------------------------------


def load_catalog_file(path: str | Path, lang: str | None = None) -> Catalog:
    """Load and validate a catalog from a file path (not cached)."""
    return Catalog.from_path(path, lang)


@functools.cache
def load_catalog(lang: str = "en") -> Catalog:
    """Load, validate and cache the packaged catalog for ``lang`` (one of :data:`LANGUAGES`)."""
    if lang not in LANGUAGES:
        raise CatalogError(f"unknown catalog language {lang!r} (available: {', '.join(LANGUAGES)})")
    resource = resources.files("ftpdiag.rules").joinpath("catalog").joinpath(f"{lang}.toml")
    source = f"ftpdiag/rules/catalog/{lang}.toml"
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{source}: cannot read catalog: {exc}") from exc
    return Catalog.from_bytes(data, source, lang)
