"""The counters a long-running proxy exposes, and its per-session log files, fed with records
as the proxy logs them (no sockets: the exposition is rendered from the registry)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from prometheus_client import generate_latest

from ftpdiag.logconfig import render_json
from ftpdiag.proxy.metrics import MAX_VERBS, Metrics
from ftpdiag.session_logs import SessionLogDir

SESSION = [
    ("session.open", {"session": "ab12", "client": "127.0.0.1:5000", "upstream": "127.0.0.1:21"}),
    ("command", {"session": "ab12", "verb": "USER", "arg": "bob"}),
    ("reply", {"session": "ab12", "code": 331, "text": "Password"}),
    ("command", {"session": "ab12", "verb": "PASS", "arg": "****"}),
    ("reply", {"session": "ab12", "code": 530, "text": "Login incorrect."}),
    ("diagnosis", {"session": "ab12", "rule": "login.failed", "severity": "error"}),
    ("transfer.end", {"session": "ab12", "direction": "download", "outcome": 226, "bytes": 10}),
    ("tls.established", {"session": "ab12", "side": "client", "channel": "control"}),
    ("upstream.failed", {"session": "cd34", "kind": "refused"}),
    ("session.close", {"session": "ab12", "reason": "client closed"}),
    ("session.summary", {"session": "ab12", "root_cause": None}),
]


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_counters_follow_the_records() -> None:
    """Sessions, commands, replies by class, diagnoses, transfers and bytes, upstream
    failures and TLS handshakes are counted from the facts; the gauge returns to zero."""
    metrics = Metrics()
    for event, fields in SESSION:
        metrics.observe(event, fields)
    assert _sample(metrics, "ftpdiag_sessions_total") == 1
    assert _sample(metrics, "ftpdiag_sessions_open") == 0
    assert _sample(metrics, "ftpdiag_commands_total", verb="USER") == 1
    assert _sample(metrics, "ftpdiag_replies_total", reply_class="5xx") == 1
    assert _sample(metrics, "ftpdiag_diagnoses_total", rule="login.failed", severity="error") == 1
    labels = {"direction": "download", "outcome": "226"}
    assert _sample(metrics, "ftpdiag_transfer_bytes_total", **labels) == 10
    assert _sample(metrics, "ftpdiag_upstream_connect_failures_total", kind="refused") == 1
    tls = {"side": "client", "channel": "control", "result": "ok"}
    assert _sample(metrics, "ftpdiag_tls_handshakes_total", **tls) == 1
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE ftpdiag_commands_total counter" in text


def test_made_up_verbs_cannot_grow_the_series_without_bound() -> None:
    """Thousands of distinct verbs from a hostile client end up in one ``other`` series."""
    metrics = Metrics()
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    verbs = [a + b + c + d for a in "XYZ" for b in letters for c in letters for d in "QRS"][:5000]
    for verb in [*verbs, "x1", "A" * 50]:
        metrics.observe("command", {"verb": verb})
    series = [s for s in metrics.commands.collect()[0].samples if s.name.endswith("_total")]
    assert len(series) == MAX_VERBS + 1
    assert _sample(metrics, "ftpdiag_commands_total", verb="other") == 5002 - MAX_VERBS


def test_each_session_gets_a_private_file_named_for_it(tmp_path: Path) -> None:
    """One file per session, mode 0600, named by time, id, client and server, holding exactly
    that session's records as JSON lines, closed after its summary."""
    logs = SessionLogDir(tmp_path / "sessions", render_json)
    other = {"session": "ef56", "event": "session.open", "client": "::1", "upstream": "[::1]:21"}
    logs.write(20, dict(other))
    for event, fields in SESSION:
        if fields["session"] == "ab12":
            logs.write(20, {"event": event, **fields})
    logs.write(20, {"event": "proxy.listen", "listen": "127.0.0.1:2121"})  # not a session's
    files = sorted((tmp_path / "sessions").iterdir())
    assert len(files) == 2
    mine = next(f for f in files if "_ab12_" in f.name)
    assert mine.name.endswith("_ab12_127.0.0.1_5000_to_127.0.0.1_21.jsonl")
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    events = [json.loads(line)["event"] for line in mine.read_text().splitlines()]
    assert events == [e for e, f in SESSION if f["session"] == "ab12"]
    assert "ab12" not in logs.files and "ef56" in logs.files
    logs.close()
    assert logs.files == {}
