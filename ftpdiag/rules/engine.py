"""The diagnosis engine: session facts in, facts (enriched) and diagnoses out.

It consumes exactly the records the proxy logs (``command``, ``reply``, ``transfer.end``…), so
the same engine runs live inside the proxy and offline on a saved JSON-lines log
(``ftpdiag analyze``). Knowledge is data: the texts of the rules are in ``diagnoses.toml``
(English, the source) and ``diagnoses_<lang>.toml`` (translations, same ids), the meaning
of each code in the catalog; the checks in ``checks.py`` only decide *which* rule fires and
with what evidence.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ftpdiag.i18n import label, template_pattern
from ftpdiag.rules.catalog import Explanation, load_catalog
from ftpdiag.rules.checks import CHECKS, FALLBACK, SLOW_REPLY_MS, refused_probe
from ftpdiag.rules.finding import Finding, by_event
from ftpdiag.rules.outcomes import Outcomes, is_probe
from ftpdiag.rules.view import SessionView

_ROUTES = by_event(CHECKS)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True, slots=True)
class RuleText:
    """The prose of one rule; empty fields fall back to the catalog entry of the code.

    ``severity`` empty means "the catalog's severity of the code" (the generic fallback).
    ``priority`` breaks ties in the session summary: among diagnoses of equal severity the
    higher priority is the more likely root cause. ``phrases`` maps an evidence field to the
    words for each of its values: ``{cause_text}`` renders ``phrases["cause"][evidence["cause"]]``.
    """

    severity: str = ""
    title: str = ""
    explanation: str = ""
    remedy: str = ""
    priority: int = 0
    phrases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


#: The English source of every rule's texts, and the file of each translation.
RULE_FILES = {"en": "diagnoses.toml", "vi": "diagnoses_vi.toml"}
_PROSE = ("title", "explanation", "remedy")


@cache
def value_words(lang: str) -> Mapping[str, Mapping[str, str]]:
    """Evidence field → its fixed English values in ``lang``'s words (``[values]`` of the
    language's file): ``side = "client"`` reads "máy khách" in Vietnamese prose, while the
    record's ``evidence`` keeps the value as logged."""
    if lang not in RULE_FILES or lang == "en":
        return {}
    text = resources.files("ftpdiag.rules").joinpath(RULE_FILES[lang]).read_text("utf-8")
    return dict(tomllib.loads(text).get("values", {}))


def _in_words(words: Mapping[str, str], value: Any) -> Any:
    """``value`` in the words of ``words`` (an exact entry, or a template entry such as
    ``"AUTH {arg} accepted (234): …"`` whose fields carry over); unchanged when none fits."""
    text = str(value)
    if text in words:
        return words[text]
    for english, said in words.items():
        match = template_pattern(english).fullmatch(text) if "{" in english else None
        if match:
            return said.format(**match.groupdict())
    return value


@cache
def rule_texts(lang: str = "en") -> Mapping[str, RuleText]:
    """Rule id → texts in ``lang``. Severity and priority come from the English source
    (``diagnoses.toml``), the prose and phrases from the language's file; a text missing
    there falls back to English field by field (the tests forbid missing ones)."""
    files = resources.files("ftpdiag.rules")
    english: Mapping[str, dict[str, Any]] = tomllib.loads(
        files.joinpath(RULE_FILES["en"]).read_text("utf-8")
    )["rule"]
    if lang == "en" or lang not in RULE_FILES:
        return {rid: RuleText(**spec) for rid, spec in english.items()}
    translated: Mapping[str, dict[str, Any]] = tomllib.loads(
        files.joinpath(RULE_FILES[lang]).read_text("utf-8")
    )["rule"]
    texts: dict[str, RuleText] = {}
    for rid, spec in english.items():
        local = translated.get(rid, {})
        merged = {**spec, **{k: local[k] for k in _PROSE if local.get(k)}}
        phrases = {
            name: {**words, **local.get("phrases", {}).get(name, {})}
            for name, words in spec.get("phrases", {}).items()
        }
        texts[rid] = RuleText(**{**merged, "phrases": phrases})
    return texts


def fill(template: str, values: Mapping[str, Any], missing: str = "unknown") -> str:
    """Fill ``{name}`` placeholders from ``values``. A ``[bracketed part]`` is kept only when
    every placeholder inside it has a value (not missing, not None); outside brackets a
    missing value reads ``missing`` ("unknown", in the reader's language)."""

    def known(name: str) -> bool:
        return values.get(name) is not None

    def optional(match: re.Match[str]) -> str:
        inner = match.group(1)
        return inner if all(known(n) for n in _PLACEHOLDER.findall(inner)) else ""

    text = _OPTIONAL.sub(optional, template)
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if known(m.group(1)) else missing, text
    )


@dataclass
class Diagnoser:
    """One per session. ``process`` returns the fact itself (replies gain ``meaning``), then
    any diagnoses it triggers, then, after ``session.close``, the ``session.summary``.

    ``slow_reply_ms`` is the latency above which a reply is diagnosed as slow. ``outcomes``
    follows what the user asked for: the summary leads with it, and without a failed operation
    or an abnormal end there is no root cause."""

    lang: str = "en"
    view: SessionView = field(default_factory=SessionView)
    slow_reply_ms: float = SLOW_REPLY_MS
    outcomes: Outcomes = field(default_factory=Outcomes)

    def __post_init__(self) -> None:
        self.view.slow_reply_ms = self.slow_reply_ms

    def process(self, event: str, fields: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if event == "diagnosis" or event == "session.summary":
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        if event == "reply":
            fields["meaning"] = self._explain(fields).title
        out.append((event, fields))
        findings = self._findings(event, fields)
        self.view.observe(event, fields)
        self.outcomes.observe(event, fields)
        for finding in findings:
            diagnosis = self.render(finding, fields)
            self.view.remember(diagnosis)
            self.outcomes.observe("diagnosis", diagnosis)
            out.append(("diagnosis", diagnosis))
        if event == "session.close":
            out.append(("session.summary", self.summary(fields)))
        return out

    def _findings(self, event: str, fields: dict[str, Any]) -> list[Finding]:
        """What the checks say of one fact, pruned so that each fault has one headline: a
        finding that ``overrides`` silences the others of its code, a specific rule silences
        the catalog's generic text, and a refused probe is only an ``info`` note."""
        findings = [f for check in _ROUTES.get(event, ()) for f in check(event, fields, self.view)]
        code = fields.get("code")
        if any(f.overrides for f in findings):
            findings = [f for f in findings if f.overrides or f.code != code]
        if event == "reply" and is_probe(fields):
            # Never an error; a warning that names the missing feature (AUTH TLS) stays.
            texts = rule_texts()
            kept = [f for f in findings if texts[f.rule].severity in ("info", "warning")]
            kept = [f for f in kept if f.rule != "protocol.unexpected_reply"]
            return kept or [refused_probe(fields)]
        if event in FALLBACK.handles and not any(  # type: ignore[attr-defined]
            f.code is not None and f.code == code for f in findings
        ):
            findings.extend(FALLBACK(event, fields, self.view))
        unique: dict[str, Finding] = {}
        for finding in findings:
            unique.setdefault(finding.rule, finding)
        return list(unique.values())

    def summary(self, close: dict[str, Any]) -> dict[str, Any]:
        """The ``session.summary`` record: the outcome first, then the view's counts and ranked
        diagnoses; the root cause only when an operation failed or the session ended badly."""
        texts = rule_texts()
        counts = self.view.summary(close, lambda r: texts[r].priority)
        cause = counts.pop("root_cause")
        if cause is not None and self.outcomes.went_wrong:
            top = next(d for d in self.view.diagnoses if d["rule"] == cause["rule"])
            cause["remedy"] = top["remedy"]
            if top.get("code") is not None and not top["rule"].startswith("reply."):
                # The catalog's words for the same reply, as evidence under the specific rule.
                cause["reply_meaning"] = self._explain({"code": top["code"]}).title
        return {
            **self.outcomes.summary(self.lang),
            **counts,
            "root_cause": cause if self.outcomes.went_wrong else None,
        }

    def _explain(self, fields: Mapping[str, Any], code: int | None = None) -> Explanation:
        catalog = load_catalog(self.lang)
        return catalog.explain(
            code if code is not None else int(fields["code"]),
            after=fields.get("command"),
            state=frozenset(fields.get("state") or ()),
            text=str(fields.get("text") or ""),
        )

    def render(self, finding: Finding, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Turn a finding into the ``diagnosis`` record: rule text first, catalog text second."""
        text = rule_texts(self.lang)[finding.rule]
        base = None
        if finding.code is not None:
            context = fields if fields.get("code") == finding.code else {"code": finding.code}
            base = self._explain({**context, **finding.context}, finding.code)
        evidence = dict(finding.evidence)
        spoken = value_words(self.lang)
        values = {k: _in_words(spoken.get(k, {}), v) for k, v in evidence.items()}
        for name, words in text.phrases.items():
            values[f"{name}_text"] = words.get(str(evidence.get(name)))
        unknown = label("words.unknown", self.lang)

        def prose(template: str, fallback: str) -> str:
            return fill(template, values, unknown) if template else fallback

        return {
            "code": finding.code,
            "rule": finding.rule,
            "severity": text.severity or (base.severity if base else "info"),
            "title": prose(text.title, base.title if base else ""),
            "explanation": prose(text.explanation, base.description if base else ""),
            "remedy": prose(text.remedy, base.remedy if base else ""),
            "evidence": evidence,
        }
