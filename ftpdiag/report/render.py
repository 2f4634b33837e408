"""The report's HTML, written from the model: every fact as plain HTML (readable with
JavaScript off and in print), the template, CSS and JavaScript read from package data.

Everything from the log is escaped; the data for the script is JSON inside
``<script type="application/json">`` with every ``<`` written as ``\\u003c``, so no text from a
server can close the element or open another.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from ftpdiag import __version__
from ftpdiag.i18n import LANGUAGES
from ftpdiag.report.model import Channel, Row, SessionReport

_SLOT = re.compile(r"\{\{(\w+)\}\}")
_KNOWN_SUMMARY = (
    "duration_ms",
    "reason",
    "commands",
    "transfers",
    "transfer_bytes",
    "transfer_rate_mbps",
    "replies_by_class",
    "outcomes",
)
#: The class of a timeline row per kind (short: a long session has tens of thousands).
_KIND = {"command": "q", "reply": "r", "proxy": "x", "note": "n", "diagnosis": "d", "gap": "g"}
#: More data channels than this are folded (a person opens them to look).
FOLD_CHANNELS = 40
#: Timeline rows per table (see ``_timeline``), and the height of a row before it is drawn.
CHUNK = 250
ROW_PX = 22
_NOT_FACTS = frozenset({*_KNOWN_SUMMARY, "diagnoses", "root_cause"})


@cache
def labels(lang: str) -> Mapping[str, str]:
    """The report's words in ``lang`` (``labels/<lang>.toml``; English for anything else)."""
    name = lang if lang in LANGUAGES else "en"
    text = resources.files("ftpdiag.report").joinpath(f"labels/{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def _asset(name: str) -> str:
    return resources.files("ftpdiag.report").joinpath(name).read_text("utf-8")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _pct(value: float) -> str:
    return f"{max(0.0, min(100.0, value)):.3f}%"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "—"
    return "—" if value is None else str(value)


def _verdict(s: SessionReport, L: Mapping[str, str]) -> str:
    found = s.root_cause()
    listed = s.summary.get("diagnoses")
    problems: list[Any] = listed if isinstance(listed, list) else []
    # The engine's verdict: a root cause only when something the user asked for failed (a
    # warning the session got around is listed, not a failure). Its outcome line comes first.
    bad = found is not None
    outcome = str(s.summary.get("outcome_text") or "")
    said = f"<p>{_e(outcome[:1].upper() + outcome[1:])}.</p>" if outcome else ""
    out = [f'<div class="verdict{" bad" if bad else ""}">']
    if not s.summary:
        out.append(f"<h3>{_e(L['outcome'])}</h3><p>{_e(L['no_summary'])}</p>")
    elif not bad:
        out.append(f"<h3>{_e(L['outcome_ok'])}</h3>{said or '<p>' + _e(L['healthy']) + '</p>'}")
    else:
        out.append(f"<h3>{_e(L['outcome_failed'])}</h3>{said}")
    if found is not None:
        cause, row = found
        diagnosis = row.diagnosis if row is not None and row.diagnosis else {}
        link = f' <a href="#{row.anchor}">({_e(L["see_evidence"])})</a>' if row else ""
        out.append(
            f'<p class="cause">{_e(L["root_cause"])}: {_e(cause.get("title", ""))}{link}</p>'
        )
        out.append(
            f"<dl><dt>{_e(L['explanation'])}</dt><dd>{_e(cause.get('explanation', ''))}</dd>"
        )
        if diagnosis.get("remedy"):
            out.append(f"<dt>{_e(L['remedy'])}</dt><dd>{_e(diagnosis['remedy'])}</dd>")
        out.append("</dl>")
    if len(problems) > 1:
        out.append(f'<div>{_e(L["problems"])}:</div><ul class="problems">')
        anchors = {id(r): r.anchor for r in s.diagnoses}
        by_rule: dict[str, str] = {}
        for r in s.diagnoses:
            if r.diagnosis:
                by_rule.setdefault(str(r.diagnosis.get("rule")), anchors[id(r)])
        for p in problems:
            if not isinstance(p, dict):
                continue
            sev, rule = _e(p.get("severity", "")), str(p.get("rule"))
            title = _e(p.get("title", ""))
            item = f'<a href="#{by_rule[rule]}">{title}</a>' if rule in by_rule else title
            word = _e(L.get(f"severity_{sev}", sev))
            out.append(f'<li><span class="sev-{sev}">{word}</span> {item}</li>')
        out.append("</ul>")
    out.append("</div>")
    return "".join(out)


def _facts(s: SessionReport, L: Mapping[str, str]) -> str:
    sm = s.summary
    rows = [
        (L["started"], s.started_at or "—"),
        (L["client"], f"{s.client} → {s.upstream}" if s.client else "—"),
        *([(L["input"], s.source)] if s.source else []),
        (L["duration"], _ms(sm.get("duration_ms")) or _ms((s.end - s.start) * 1000)),
        (L["commands"], sm.get("commands", s.commands)),
    ]
    if sm:
        rows += [
            (L["transfers"], sm.get("transfers")),
            (L["bytes"], _size(sm.get("transfer_bytes"))),
            (L["rate"], f"{sm.get('transfer_rate_mbps')} Mbit/s"),
            (L["close_reason"], sm.get("reason")),
            (L["replies"], sm.get("replies_by_class")),
            (L["outcomes"], sm.get("outcomes")),
        ]
        # Fields the summary grows (an outcome model, …) are shown as they are.
        rows += [(k, v) for k, v in sm.items() if k not in _NOT_FACTS]
    pairs = [f"<th>{_e(k)}</th><td>{_e(_value(v))}</td>" for k, v in rows]
    cells = "".join(f"<tr>{''.join(pairs[n : n + 2])}</tr>" for n in range(0, len(pairs), 2))
    return f'<table class="facts">{cells}</table>'


def _throughput(c: Channel, start: float, width: float) -> str:
    """Rate over time inside the bar, from the transfer.progress records (plain SVG)."""
    points = [(start, 0), *c.progress, (start + width, c.bytes)]
    rates = []
    for (t1, b1), (t2, b2) in itertools.pairwise(points):
        if t2 > t1:
            rates.append(((t1 + t2) / 2, (b2 - b1) / (t2 - t1)))
    if len(rates) < 2 or width <= 0:
        return ""
    top = max(r for _, r in rates) or 1.0
    coords = " ".join(f"{(t - start) / width * 100:.2f},{20 - r / top * 18:.2f}" for t, r in rates)
    return (
        '<svg viewBox="0 0 100 20" preserveAspectRatio="none" aria-hidden="true">'
        f'<polyline points="{coords}"/></svg>'
    )


def _channels(s: SessionReport, L: Mapping[str, str]) -> str:
    if not s.channels:
        return f'<p class="muted">{_e(L["no_channels"])}</p>'
    biggest = max((c.bytes for c in s.channels.values()), default=0) or 1
    out = [
        f'<div class="channels"><div class="axis"><span>0 s</span><span>{_e(L["time"])}</span>'
        f"<span>{s.span:.3f} s</span></div>"
    ]
    for c in s.channels.values():
        end = c.end if c.end is not None else s.end - s.start
        left, width = (c.start / s.span) * 100, ((end - c.start) / s.span) * 100
        marks = "".join(
            f'<span class="mark c{code // 100}{" lo" if n % 2 else ""}"'
            f' style="left:{_pct(t / s.span * 100)}" title="{code} +{t:.3f} s">{code}</span>'
            for n, (t, code) in enumerate(c.marks)
        )
        name = f"#{c.pipe} {c.command} {c.path}".strip()
        facts = [f"{_size(c.bytes)}"]
        if c.expected is not None:
            facts[0] += f" / {_size(c.expected)} {_e(L['expected'])}"
        if c.rate_mbps is not None:
            facts.append(f"{_e(c.rate_mbps)} Mbit/s")
        if c.outcome is not None:
            facts.append(f"{_e(L['outcome'])} {_e(c.outcome)}")
        if c.ended:
            facts.append(f"{_e(L['ended'])}: {_e(c.ended)}")
        if c.failed:
            facts.append(f"{_e(L['failed'])}: {_e(c.failed)}")
        if c.mode:
            facts.append(_e(c.mode))
        if c.tls:
            facts.append(f"TLS {_e(', '.join(c.tls))}")
        if c.rewrite:
            facts.append(f'<span class="rw">PASV {_e(c.rewrite)} ({_e(L["rewritten"])})</span>')
        facts += [f'<a href="#{a}" title="{_e(L["evidence"])}">⚑</a>' for a in c.diagnoses]
        out.append(
            f'<div class="chan{" bad" if c.bad else ""}" id="s{_e(s.sid)}-p{c.pipe}"'
            f' data-p="{c.pipe}" data-bytes="{c.bytes}">'
            f'<div class="name">{_e(name)}</div>'
            f'<div class="track"><div class="span" style="left:{_pct(left)};width:{_pct(width)}">'
            f"{_throughput(c, c.start, end - c.start)}</div>{marks}</div>"
            f'<div class="blabel">{_e(L["bytes"])}</div><div class="bytesbar"><div class="fill"'
            f' style="width:{_pct(c.bytes / biggest * 100)}"></div></div>'
            f'<div class="cfacts">{" · ".join(facts)}</div></div>'
        )
    out.append("</div>")
    if len(s.channels) > FOLD_CHANNELS:  # hundreds of transfers: the timeline comes first
        count = f"{len(s.channels)} {_e(L['channels'])}"
        return f"<details><summary>{count}</summary>{''.join(out)}</details>"
    return "".join(out)


def _row(r: Row, L: Mapping[str, str]) -> str:
    bad = r.cls in ("c4", "c5", "warning", "error")
    p = f' data-p="{r.pipe}"' if r.pipe is not None else ""
    # Only diagnoses are linked to; an id on every row would cost 10 % of a long report.
    ident = f' id="{r.anchor}"' if r.kind == "diagnosis" else ""
    head = f'<tr{ident} class="{_row_class(r)}{" bad" if bad else ""}"{p}>'
    t = f'<td class="t">{r.t:.3f}</td>'
    if r.kind == "gap":
        gap = f"… {_e(r.text)} {_e(L['omitted'])} …"
        return f'{head}{t}<td></td><td class="dx" colspan="3">{gap}</td></tr>'
    if r.kind == "diagnosis":
        d = r.diagnosis or {}
        body = f"<p>{_e(d.get('explanation', ''))}</p>"
        if d.get("remedy"):
            body += f'<p class="rem">{_e(d["remedy"])}</p>'
        sev = _e(d.get("severity", ""))
        opened = " open" if r.cls in ("warning", "error") else ""
        word = _e(L.get(f"severity_{sev}", sev))
        summary = f'<span class="sev-{sev}">{word}</span> {_e(r.text)}'
        return (
            f'{head}{t}<td></td><td class="dx" colspan="3"><details{opened}>'
            f"<summary>{summary}</summary>{body}</details></td></tr>"
        )
    title = f' title="{_e(r.detail)}"' if r.detail else ""
    if r.kind == "command":
        reply = r.reply
        server = ""
        if reply is not None:
            rt = f' title="{_e(reply.detail)}"' if reply.detail else ""
            server = f"<td{rt}>← {_text(reply, L)}</td>"
        lat = _ms(reply.latency_ms) if reply is not None else ""
        cells = f'<td class="l">{lat}</td><td class="lc">→ {_text(r, L)}</td><td></td>{server}'
    elif r.kind == "reply":
        lat = _ms(r.latency_ms)
        cells = f'<td class="l">{lat}</td><td></td><td></td><td{title}>← {_text(r, L)}</td>'
    else:
        tag = {"proxy": L["proxy_reply"]}.get(r.kind, r.detail)
        if r.cls == "x":
            tag = f"{r.detail}: {L['rewritten']}"
        cells = (
            f'<td></td><td></td><td class="lf"{title}>{_text(r, L)}'
            f' <span class="muted">({_e(tag)})</span></td>'
        )
    return f"{head}{t}{cells}</tr>"


def _text(r: Row, L: Mapping[str, str]) -> str:
    """A line, escaped; a multi-line reply folded under its first line."""
    text = _e(r.text)
    if not r.more:
        return text
    return (
        f'<details><summary>{text} <span class="muted">(+{len(r.more)} {_e(L["more_lines"])})'
        f"</span></summary>{'<br>'.join(_e(line) for line in r.more)}</details>"
    )


def _row_class(r: Row) -> str:
    return f"{_KIND[r.kind]} {r.cls}".strip()


def _timeline(s: SessionReport, L: Mapping[str, str]) -> str:
    """The rows in tables of ``CHUNK`` rows with the same columns: the browser lays out only
    the tables on screen (``content-visibility``), so 10,000 commands, or thirty sessions,
    open quickly."""
    cols = (
        '<colgroup><col class="t"><col class="l"><col class="c"><col class="f"><col class="s">'
        "</colgroup>"
    )
    head = (
        f"<thead><tr><th>{_e(L['time'])} (s)</th><th>{_e(L['latency'])}</th>"
        f"<th>{_e(L['client'])}</th><th>{_e(L['ftpdiag'])}</th><th>{_e(L['server'])}</th>"
        "</tr></thead>"
    )
    tables = []
    for n in range(0, max(len(s.rows), 1), CHUNK):
        chunk = s.rows[n : n + CHUNK]
        rows = "\n".join(_row(r, L) for r in chunk)
        # The space a table takes until it is first drawn: about a line per row.
        size = f' style="contain-intrinsic-size:auto {len(chunk) * ROW_PX}px"'
        tables.append(f'<table class="tl"{size}>{cols}{head}<tbody>\n{rows}\n</tbody></table>')
    omitted = f'<p class="omitted">{s.omitted} {_e(L["omitted"])}</p>' if s.omitted else ""
    return (
        f'{omitted}<div class="sticky"><div class="tools" hidden>'
        '<label><input type="checkbox" class="f-bad"> '
        f'{_e(L["errors_only"])}</label><select class="f-chan"><option value="">'
        f'{_e(L["all_channels"])}</option></select><input type="search" class="f-q"'
        f' placeholder="{_e(L["search"])}…" aria-label="{_e(L["search"])}">'
        f'<button type="button" class="f-fold">{_e(L["fold"])}</button>'
        f'<span class="f-n muted"></span></div><table class="tl hd">{cols}{head}</table></div>'
        f"{''.join(tables)}"
    )


def _session(s: SessionReport, L: Mapping[str, str]) -> str:
    return (
        f'<section class="session" id="s{_e(s.sid)}" data-sid="{_e(s.sid)}">'
        f"<h2>{_e(L['session'])} {_e(s.sid)}</h2>{_verdict(s, L)}{_facts(s, L)}"
        f"<h3>{_e(L['channels'])}</h3>{_channels(s, L)}"
        f"<h3>{_e(L['timeline'])}</h3>{_timeline(s, L)}</section>"
    )


def _index(sessions: list[SessionReport], L: Mapping[str, str]) -> str:
    rows = []
    for s in sessions:
        found = s.root_cause()
        cause = (
            _e(found[0].get("title", ""))
            if found
            else f'<span class="muted">{_e(L["outcome_ok"])}</span>'
        )
        rows.append(
            f'<tr><td><a href="#s{_e(s.sid)}">{_e(s.sid)}</a></td><td>{_e(s.started_at)}</td>'
            f"<td>{_e(s.client)}</td><td>{s.commands}</td><td>{cause}</td></tr>"
        )
    return (
        f'<h2>{_e(L["index"])}</h2><table class="index"><tr><th>{_e(L["session"])}</th>'
        f"<th>{_e(L['started'])}</th><th>{_e(L['client'])}</th><th>{_e(L['commands'])}</th>"
        f"<th>{_e(L['root_cause'])}</th></tr>{''.join(rows)}</table>"
    )


def _title(sessions: list[SessionReport], L: Mapping[str, str]) -> str:
    """The window's title: with one session, its id and most likely cause (tabs, PDF names)."""
    if len(sessions) != 1:
        return str(L["title"])
    found = sessions[0].root_cause()
    cause = f": {found[0].get('title', '')}" if found else ""
    return f"{L['title']} {sessions[0].sid}{cause}"


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` at all (so no ``</script>``, no
    ``<!--``), and no line separators that older parsers would take for line ends."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(sessions: list[SessionReport], lang: str = "en") -> str:
    """The whole report as one HTML document."""
    L = labels(lang)
    body = [f"<header><h1>{_e(L['title'])}</h1></header>"]
    if len(sessions) > 1:
        body.append(_index(sessions, L))
    body.extend(_session(s, L) for s in sessions)
    body.append(f"<footer>{_e(L['generated'])} {_e(__version__)}</footer>")
    data = {
        "labels": {k: L[k] for k in ("shown", "all_channels")},
        "sessions": [
            {
                "id": s.sid,
                "channels": [
                    [c.pipe, f"#{c.pipe} {c.command} {c.path}".strip()] for c in s.channels.values()
                ],
            }
            for s in sessions
        ],
    }
    slots: dict[str, Callable[[], str]] = {
        "lang": lambda: _e(lang if lang in LANGUAGES else "en"),
        "version": lambda: _e(__version__),
        "title": lambda: _e(_title(sessions, L)),
        "css": lambda: _asset("report.css"),
        "js": lambda: _asset("report.js"),
        "body": lambda: "\n".join(body),
        "data": lambda: script_json(data),
    }
    return _SLOT.sub(lambda m: slots[m.group(1)](), _asset("template.html"))
