"""The HTML report without a browser: what it holds (and never holds), from real sessions
through the real proxy, the ``report`` command, and ``proxy --report-dir``."""

from __future__ import annotations

import ftplib
import json
import re
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.report import build_report
from ftpdiag.report.collect import ReportSink
from ftpdiag.report.redact import redact_records
from ftpdiag.report.render import labels
from tests import report_sessions
from tests.report_sessions import logs  # noqa: F401 - the fixture
from tests.test_cli_e2e import PASSWORD as E2E_PASSWORD
from tests.test_cli_e2e import ProxyProcess, upstream  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(90)


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def test_failing_session_shows_root_cause_remedy_and_channels(
    logs: dict[str, Path],  # noqa: F811
) -> None:
    """A 426 after 100000 bytes: the root cause with its remedy at the top of its session,
    both channels with bytes, expected size, outcome and the PASV rewrite, anchored links."""
    html = build_report(report_sessions.records(logs["failing"]))
    assert html.count('<section class="session"') == 2
    assert 'class="index"' in html  # two sessions: an index first
    second = html[html.index('<section class="session"', html.index("</section>")) :]
    verdict = second[: second.index("</div>")]
    assert "Transfer aborted (426): RETR big.bin after 100000 bytes" in verdict
    assert "How to fix it" in verdict and "REST 100000" in verdict
    link = re.search(r'href="#(s\w+-r\d+)"', verdict)
    assert link and f'id="{link.group(1)}"' in second
    assert "97.7 KiB / 1.0 MiB expected" in second  # the aborted channel: actual vs expected
    assert "Outcome 426" in second and "Outcome 226" in second
    assert re.search(r"PASV 127\.0\.0\.2:\d+ → 127\.0\.0\.1:\d+ \(rewritten by ftpdiag\)", second)
    widths = re.findall(r'data-bytes="(\d+)".*?class="fill" style="width:([\d.]+)%"', second)
    assert [(int(b), float(w)) for b, w in widths] == [(30000, 30.0), (100000, 100.0)]


def test_healthy_session_says_nothing_went_wrong(logs: dict[str, Path]) -> None:  # noqa: F811
    """A session without problems has no root cause and no error or warning rows."""
    html = build_report(report_sessions.records(logs["plain"]))
    assert "No problem found" in html and "Most likely cause" not in html
    assert ' bad"' not in html and "Something went wrong" not in html
    assert "(+" in html and "<details><summary>211" in html  # FEAT's multi-line reply, folded


def test_every_command_has_a_row_and_tls_is_shown(logs: dict[str, Path]) -> None:  # noqa: F811
    """One ``tr.q`` row per logged command, in a TLS session too, with its TLS facts and the
    throughput over time drawn from its progress records."""
    records = report_sessions.records(logs["tls"])
    html = build_report(records)
    commands = sum(r["event"] == "command" for r in records)
    assert len(re.findall(r'<tr class="q[ "]', html)) == commands
    assert "AUTH TLS" in html and re.search(r"TLS server data TLSv1\.\d \S+ · resumed", html)
    assert re.search(r"TLS (server|client) TLSv1\.\d( resumed)?, (server|client) TLSv1", html)
    assert any(r["event"] == "transfer.progress" for r in records)
    assert "<polyline points=" in html  # throughput over time, from transfer.progress


def test_no_external_resource_and_a_policy_forbidding_any(logs: dict[str, Path]) -> None:  # noqa: F811
    """Every src/href is a fragment or a data: URL, nothing names a scheme://, and the
    Content-Security-Policy forbids any load the page did not inline."""
    for log in logs.values():
        html = build_report(report_sessions.records(log))
        page = parse(html)
        for tag, attrs in page.tags:
            for name in ("src", "href", "action", "srcset", "poster"):
                value = attrs.get(name)
                assert value is None or value.startswith(("#", "data:")), (tag, name, value)
        assert not re.search(r"[a-z]+://", html, re.I)
        assert "url(" not in html and "@import" not in html
        csp = [
            a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
        ]
        assert csp and "default-src 'none'" in (csp[0] or "")


def test_data_script_cannot_be_closed_by_server_text() -> None:
    """A reply text with ``</script>`` and ``<!--`` stays text: the JSON holds no ``<`` and
    the page keeps exactly its two script elements."""
    nasty = "</script><script>alert(1)</script><!--"
    records: list[dict[str, Any]] = [
        {"event": "session.open", "session": "ab12", "client": "127.0.0.1:1", "upstream": "u"},
        {"event": "command", "session": "ab12", "verb": "RETR", "arg": nasty},
        {"event": "transfer.start", "session": "ab12", "pipe": 1, "command": "RETR", "path": nasty},
        {"event": "reply", "session": "ab12", "code": 550, "text": nasty, "command": "RETR"},
    ]
    html = build_report(records)
    page = parse(html)
    assert [a.get("type") for t, a in page.tags if t == "script"] == ["application/json", None]
    data = page.scripts[0]
    assert "<" not in data and json.loads(data)["sessions"][0]["channels"][0][1].endswith(nasty)
    assert "alert(1)</script>" not in html.replace(html[html.index("<script>") :], "")


def test_password_in_clear_never_reaches_the_report(tmp_path: Path) -> None:
    """A log holding a password in clear in a PASS argument, a reply, a field named like a
    password, a URL and a diagnosis: the report has ``****`` and never the password."""
    secret = "Hunter2-clear"
    records: list[dict[str, Any]] = [
        {"event": "proxy.listen", "sandbox_password": secret, "try_cmd": f"ftp://u:{secret}@h/"},
        {"event": "session.open", "session": "cd34", "client": "127.0.0.1:1", "upstream": "u"},
        {"event": "command", "session": "cd34", "verb": "USER", "arg": "alice"},
        {"event": "command", "session": "cd34", "verb": "PASS", "arg": secret},
        {
            "event": "reply",
            "session": "cd34",
            "code": 530,
            "command": "PASS",
            "arg": secret,
            "text": f"Login incorrect for password {secret}",
        },
        {
            "event": "diagnosis",
            "session": "cd34",
            "rule": "login.failed",
            "severity": "error",
            "code": 530,
            "title": "x",
            "explanation": f"pw {secret}",
            "evidence": {"password": secret},
        },
        {
            "event": "tls.failed",
            "session": "cd34",
            "detail": f"see ftp://alice:{secret}@host/x",
            "side": "server",
        },
        {"event": "session.close", "session": "cd34", "reason": "server closed"},
    ]
    for recompute in (True, False):
        html = build_report(records, recompute=recompute)
        assert secret not in html and "Hunter2" not in html
        assert "PASS ****" in html and "Login incorrect for password ****" in html
    assert secret not in json.dumps(redact_records(records))


def test_vietnamese_labels_are_complete_and_used(logs: dict[str, Path]) -> None:  # noqa: F811
    """Both label files have the same keys; ``lang='vi'`` writes Vietnamese headings and the
    engine's Vietnamese diagnosis texts."""
    assert set(labels("vi")) == set(labels("en"))
    assert all(labels("vi")[k] for k in labels("vi"))
    html = build_report(report_sessions.records(logs["failing"]), "vi")
    assert '<html lang="vi">' in html
    assert "Nguyên nhân có khả năng nhất" in html and "Cách khắc phục" in html
    assert "Most likely cause" not in html


def test_report_command_writes_a_private_file(
    logs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """``ftpdiag report A B -o FILE`` (two logs, as ``analyze`` reads them) writes one file,
    mode 0600, with the sessions of both (an input's session id that an earlier input used
    gets the input's number); a missing input, or one without a session (lines
    that are not records are skipped with a warning), is an error line and status 2."""
    out = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "ftpdiag", "report", str(logs["plain"]), str(logs["failing"])]
    done = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text("utf-8").count('<section class="session"') == 3
    twice = [*cmd, str(logs["plain"]), "-o", str(out)]
    assert subprocess.run(twice, capture_output=True, timeout=60).returncode == 0
    html = out.read_text("utf-8")
    assert html.count('<section class="session"') == 4  # the same log twice: its session twice
    plain_sid = report_sessions.records(logs["plain"])[0]["session"]
    assert f'id="s{plain_sid}"' in html and f'id="s{plain_sid}.3"' in html
    missing = [sys.executable, "-m", "ftpdiag", "report", str(tmp_path / "nope.jsonl")]
    bad = subprocess.run([*missing, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("ftpdiag: error: cannot read")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('5\nnot json\n{"event": "proxy.listen"}\n', "utf-8")
    empty = [sys.executable, "-m", "ftpdiag", "report", str(junk), "-o", str(out)]
    none = subprocess.run(empty, capture_output=True, text=True, timeout=60)
    assert none.returncode == 2, none.stderr
    assert f"{junk}:1 is not JSON; skipped" in none.stderr and f"{junk}:2 is not" in none.stderr
    assert none.stderr.endswith("ftpdiag: error: no session in the input: nothing to report\n")


def test_report_sink_keeps_long_sessions_bounded(tmp_path: Path) -> None:
    """A session of 30,000 records through a sink that keeps 2,000: the report holds the head,
    the tail and the error diagnosis in between, says how many rows it left out, and
    ``report.written`` names the file (mode 0600, time and session in its name)."""
    said: list[tuple[str, dict[str, Any]]] = []
    sink = ReportSink(tmp_path / "reports", "en", lambda e, f: said.append((e, f)), keep=2_000)

    def feed(event: str, **fields: Any) -> None:
        stamp = f"2026-12-01T10:00:{len(said) % 60:02d}.000000Z"
        sink.write(20, {"event": event, "session": "beef", "timestamp": stamp, **fields})

    feed("session.open", client="127.0.0.1:5", upstream="127.0.0.1:21")
    for n in range(15_000):
        feed("command", verb="NOOP", arg=str(n))
        feed("reply", code=200, text=f"ok {n}", command="NOOP")
        if n == 7_000:
            feed("diagnosis", rule="x.y", severity="error", title="the middle problem", code=500)
    feed("session.close", reason="client quit")
    feed("session.summary", commands=15_000, diagnoses=[], root_cause=None)
    assert sink.sessions == {}
    [(event, fields)] = said
    assert event == "report.written" and fields["session"] == "beef"
    path = Path(fields["path"])
    assert path.name == "20261201-100000-beef.html" and stat.S_IMODE(path.stat().st_mode) == 0o600
    html = path.read_text("utf-8")
    assert "NOOP 0<" in html and "NOOP 14999<" in html and "NOOP 7000<" not in html
    assert "the middle problem" in html
    assert re.search(r'class="omitted">2800\d rows of this long session were left out', html)
    assert re.search(
        r'<tr class="g"><td class="t">[\d.]+</td><td></td><td class="dx" colspan="3">… 2800\d', html
    )


def test_proxy_report_dir_writes_one_report_per_session(
    tmp_path: Path,
    upstream: Any,  # noqa: F811 - the fixture
) -> None:
    """``ftpdiag proxy --report-dir DIR``: a session through the real command gives one report
    in DIR when it closes, logged as ``report.written``, without the password; a session still
    open at SIGTERM gets its report (and its log line) before the proxy exits."""
    reports = tmp_path / "reports"
    proxy = ProxyProcess(
        tmp_path, "--upstream", f"127.0.0.1:{upstream.address[1]}", "--report-dir", str(reports)
    )
    try:
        ftp = ftplib.FTP()
        ftp.connect(*proxy.address, timeout=10)
        ftp.login("alice", E2E_PASSWORD)
        ftp.retrbinary("RETR data.bin", lambda _: None)
        ftp.quit()
        written = proxy.wait_for("report.written")
        still_open = ftplib.FTP()
        still_open.connect(*proxy.address, timeout=10)
        still_open.login("alice", E2E_PASSWORD)
    finally:
        assert proxy.stop() == 0
    still_open.close()
    path = Path(written["path"])
    assert path.parent == reports
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{written['session']}\.html", path.name)
    html = path.read_text("utf-8")
    assert "RETR data.bin" in html and "No problem found" in html
    assert E2E_PASSWORD not in html and "PASS ****" in html
    logged = [r for r in proxy.records() if r["event"] == "report.written"]
    assert len(logged) == 2
    assert sorted(p.name for p in reports.iterdir()) == sorted(Path(r["path"]).name for r in logged)
    assert all(stat.S_IMODE(Path(r["path"]).stat().st_mode) == 0o600 for r in logged)


def test_model_rows_channels_and_rewrites() -> None:
    """Facts in, rows and channels out: a command and its reply share a row, a second reply
    and an unsolicited one get their own, ftpdiag's rewrites and answers sit in its lane, and a
    data connection that never came is a failed channel with its 150 and 425 marked."""
    from ftpdiag.report.model import build_sessions

    def at(ms: int, event: str, **fields: Any) -> dict[str, Any]:
        stamp = f"2026-12-01T10:00:00.{ms:03d}000Z"
        return {"event": event, "session": "0a0a", "timestamp": stamp, **fields}

    [s] = build_sessions(
        [
            at(0, "session.open", client="127.0.0.1:5", upstream="127.0.0.1:21"),
            at(1, "command", verb="PASV", arg=""),
            at(2, "reply", code=227, text="Entering passive mode", command="PASV"),
            at(
                3,
                "data.passive",
                pipe=1,
                code=227,
                advertised="10.0.0.5:2000",
                dialled="127.0.0.1:2000",
            ),
            at(4, "command", verb="RETR", arg="f.bin"),
            at(5, "transfer.start", pipe=1, command="RETR", path="f.bin", direction="download"),
            at(6, "reply", code=150, text="Opening\nsecond line", command="RETR"),
            at(40, "data.failed", pipe=1, side="client", kind="timeout", detail="no connection"),
            at(41, "reply", code=425, text="Can't open data connection", command="RETR"),
            at(42, "proxy.reply", code=421, text="Service closing", command=None),
            at(43, "reply", code=421, text="Timeout", command=None, unsolicited=True),
            at(50, "session.close", reason="server closed"),
        ]
    )
    kinds = [(r.kind, r.text, r.reply.text if r.reply else None) for r in s.rows]
    assert kinds[:3] == [
        ("command", "PASV", "227 Entering passive mode"),
        ("note", "227 10.0.0.5:2000 → 127.0.0.1:2000", None),
        ("command", "RETR f.bin", "150 Opening"),
    ]
    assert s.rows[2].reply is not None and s.rows[2].reply.more == ["second line"]
    assert [(r.kind, r.text) for r in s.rows[-3:]] == [
        ("reply", "425 Can't open data connection"),
        ("proxy", "421 Service closing"),
        ("reply", "421 Timeout"),
    ]
    assert {r.pipe for r in s.rows[:-2]} == {1}
    [chan] = s.channels.values()
    assert chan.failed == "client timeout: no connection" and chan.bad
    assert chan.rewrite == "10.0.0.5:2000 → 127.0.0.1:2000"
    assert [code for _, code in chan.marks] == [150, 425]
    assert abs(s.span - 0.050) < 1e-6 and abs(chan.end - 0.040) < 1e-6


@pytest.mark.parametrize("seed", range(40))
def test_odd_field_values_never_break_the_report(
    logs: dict[str, Path],  # noqa: F811
    seed: int,
) -> None:
    """Records of a real session with field values of the wrong type (a hand-edited log,
    another tool's importer) still give a report, and everything from them stays escaped."""
    import random

    rng = random.Random(seed)
    odd: list[Any] = [None, "", '"><b id=x>', [1, {"a": 2}], {"k": [None]}, -1, 1e308, True, 10**30]
    records = report_sessions.records(logs["failing"])
    for record in records:
        for key in list(record):
            if key not in ("event", "session") and rng.random() < 0.3:
                record[key] = rng.choice(odd)
    html = build_report(records, recompute=False)
    assert "<b id=x>" not in html and html.rstrip().endswith("</html>")


def test_console_says_where_the_report_went() -> None:
    """The console forms of ``report.written`` and ``report.failed`` are sentences with the
    path (and the reason), not ``key=value`` pairs."""
    from ftpdiag.console import ConsoleRenderer

    render = ConsoleRenderer(color=False)
    base = {"session": "ab12", "timestamp": "2026-12-01T10:00:00.000000Z", "path": "r/x.html"}
    written = render({"event": "report.written", **base})
    failed = render({"event": "report.failed", **base, "error": "No space left on device"})
    assert written.endswith("⇄ report written r/x.html") and "=" not in written
    assert failed.endswith("✗ report not written to r/x.html: No space left on device")


def test_report_sink_says_when_it_cannot_write(tmp_path: Path) -> None:
    """A report directory that cannot be made gives ``report.failed`` with the reason, and the
    proxy's logging goes on."""
    (tmp_path / "file").write_text("in the way")
    said: list[tuple[str, dict[str, Any]]] = []
    sink = ReportSink(tmp_path / "file" / "reports", "en", lambda e, f: said.append((e, f)))
    for event in ("session.open", "command", "session.close", "session.summary"):
        sink.write(20, {"event": event, "session": "0b0b", "verb": "NOOP", "arg": ""})
    [(event, fields)] = said
    assert event == "report.failed" and fields["session"] == "0b0b"
    assert fields["error"] == "Not a directory" and fields["path"].endswith("0b0b.html")
