"""The HTML session report: records in, one self-contained HTML file out.

``build_report`` is pure (records → string): ``ftpdiag report`` feeds it what ``ftpdiag
analyze`` reads, and ``ftpdiag proxy --report-dir`` the records of each session as it closes.
"""

from __future__ import annotations

from typing import Any

from ftpdiag.analyze import analyze_indexed
from ftpdiag.report.model import build_sessions
from ftpdiag.report.redact import redact_records
from ftpdiag.report.render import labels, render

__all__ = ["build_report", "labels", "with_diagnoses"]


def with_diagnoses(records: list[dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    """The facts of ``records`` with the engine's diagnoses and summaries recomputed, each placed
    right after the fact it was produced from (as the live proxy logs them)."""
    facts = [r for r in records if r.get("event") not in ("diagnosis", "session.summary")]
    produced: dict[int, list[dict[str, Any]]] = {}
    for index, result in analyze_indexed(facts, lang):
        result.setdefault("timestamp", facts[index].get("timestamp"))
        produced.setdefault(index, []).append(result)
    merged: list[dict[str, Any]] = []
    for index, fact in enumerate(facts):
        merged.append(fact)
        merged.extend(produced.get(index, ()))
    return merged


def build_report(records: list[dict[str, Any]], lang: str = "en", recompute: bool = True) -> str:
    """The report of every session in ``records`` as one HTML document.

    ``recompute`` re-runs the diagnosis engine (as ``ftpdiag analyze`` does); without it, the
    ``diagnosis`` and ``session.summary`` records already present are shown where they stand
    (the live proxy's own, whose facts may have been thinned out for a long session)."""
    clean = redact_records(records)
    merged = with_diagnoses(clean, lang) if recompute else clean
    return render(build_sessions(merged), lang)
