"""Importers: every fixture is detected as its own format (and by no other detector), rebuilt
into the proxy's records, and diagnosed with the root cause the failure deserves; no password
of any fixture survives into any output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftpdiag import importers
from ftpdiag.analyze import analyze_records, markdown
from ftpdiag.importers.base import Format
from ftpdiag.importers.paste import clean_lines, redact

FIXTURES = Path(__file__).parent / "fixtures"
FALLBACK = "text"

# fixture → (its format, the root-cause rule of each session it holds; None: no problem)
EXPECTED: dict[str, tuple[str, list[str | None]]] = {
    "curl_v.ok": ("curl", [None]),
    "curl_trace.ok": ("curl", [None]),
    "tnftp.ok": ("ftp", [None]),
    "ftplib_debug.ok": ("python", [None]),
    # the download works (the client used the control address): a warning, no root cause
    "curl_v.nat": ("curl", [None]),
    "curl_trace.nat": ("curl", [None]),
    "lftp.nat": ("lftp", [None]),
    "curl_v.badpw": ("curl", ["login.failed"]),
    # curl stops at SIZE's 550 and quits: its download failed (the live proxy says the same)
    "curl_v.missing": ("curl", ["file.not_found"]),
    "curl_v.pasv_unreachable": ("curl", ["client.data_failed"]),
    "curl_v.refused": ("curl", ["client.refused"]),
    "curl_v.tls_required": ("curl", ["tls.required"]),
    "curl_v.two_sessions_quoted": ("curl", ["login.failed", None]),
    "curl_v.tls_untrusted": ("curl", ["client.tls"]),
    "lftp.tls_untrusted": ("lftp", ["client.tls"]),
    "curl_trace.badpw": ("curl", ["login.failed"]),
    "curl_trace.missing": ("curl", ["file.not_found"]),
    "curl_trace.pasv_unreachable": ("curl", ["client.data_failed"]),
    "curl_trace.refused": ("curl", ["client.refused"]),
    "curl_trace.tls_required": ("curl", ["tls.required"]),
    "lftp.badpw": ("lftp", ["login.failed"]),
    "curl_v.vsftpd.badpw": ("curl", ["login.failed"]),
    "curl_v.vsftpd.missing": ("curl", ["file.not_found"]),  # "550 Could not get file size."
    "curl_v.proftpd.badpw": ("curl", ["login.failed"]),
    "curl_v.proftpd.missing": ("curl", ["file.not_found"]),
    "curl_v.pureftpd.badpw": ("curl", ["login.failed"]),
    "curl_v.pureftpd.missing": ("curl", ["file.not_found"]),
    "lftp.vsftpd.badpw": ("lftp", ["login.failed"]),
    "lftp.vsftpd.missing": ("lftp", ["file.unavailable"]),
    "lftp.proftpd.badpw": ("lftp", ["login.failed"]),
    "lftp.proftpd.missing": ("lftp", ["file.not_found"]),
    # Pure-FTPd answers a wrong password after a delay longer than lftp's 3 s net:timeout
    "lftp.pureftpd.badpw": ("lftp", ["client.reply_timeout"]),
    "lftp.pureftpd.missing": ("lftp", ["reply.explained"]),
    "lftp.missing": ("lftp", ["file.not_found"]),
    "lftp.pasv_unreachable": ("lftp", ["client.data_failed"]),
    "lftp.refused": ("lftp", ["client.refused"]),
    "lftp.tls_required": ("lftp", ["tls.required"]),
    "tnftp.badpw": ("ftp", ["login.failed"]),
    "ftp.windows.active": ("ftp", ["data.cannot_open_active"]),  # ftp.exe knows only PORT
    "gnu_ftp.ok": ("ftp", [None]),
    "gnu_ftp.badpw": ("ftp", ["login.failed"]),
    # nothing shows which command got the 550: no operation is known to have failed
    "gnu_ftp.missing": ("ftp", [None]),
    "gnu_ftp.pasv_unreachable": ("ftp", [None]),  # GNU ftp uses PORT: the fault never applies
    "gnu_ftp.refused": ("ftp", ["client.refused"]),
    "gnu_ftp.tls_required": ("ftp", ["tls.required"]),
    "ncftp.ok": ("ncftp", [None]),
    "ncftp.badpw": ("ncftp", ["login.failed"]),
    "ncftp.missing": ("ncftp", ["file.not_found"]),
    "ncftp.pasv_unreachable": ("ncftp", ["client.data_failed"]),  # then ncftp falls back to PORT
    "ncftp.refused": ("ncftp", ["client.refused"]),
    "ncftp.tls_required": ("ncftp", ["tls.required"]),
    "tnftp.missing": ("ftp", ["file.not_found"]),
    "tnftp.pasv_unreachable": ("ftp", ["client.data_failed"]),  # then tnftp falls back to PORT
    "tnftp.refused": ("ftp", ["client.refused"]),
    "tnftp.tls_required": ("ftp", ["tls.required"]),
    "ftplib_traceback.badpw": ("python", ["login.failed"]),
    "ftplib_traceback.missing": ("python", ["file.not_found"]),
    "ftplib_traceback.pasv_unreachable": ("python", ["client.data_failed"]),
    "ftplib_traceback.refused": ("python", ["client.refused"]),
    "ftplib_traceback.tls_required": ("python", ["tls.required"]),
    "ftplib_debug.badpw": ("python", ["login.failed"]),
    "ftplib_debug.missing": ("python", ["file.not_found"]),
    "ftplib_debug.pasv_unreachable": ("python", ["client.data_failed"]),
    "ftplib_debug.refused": ("python", ["client.refused"]),
    "ftplib_debug.tls_required": ("python", ["tls.required"]),
    "filezilla.en.timeout": ("filezilla", ["client.data_failed"]),
    "filezilla.fr.badpw": ("filezilla", ["login.failed"]),
    "filezilla.de.missing": ("filezilla", ["file.not_found"]),
    "filezilla.es.refused": ("filezilla", ["client.refused"]),
    "filezilla.it.tls": ("filezilla", ["client.tls"]),
    "filezilla.en.connect_timeout": ("filezilla", ["client.timeout", "client.timeout"]),
    "winscp.timeout": ("winscp", ["client.data_failed"]),
    # the third session: curl's SIZE refused, then QUIT: the download failed, as live
    "vsftpd.protocol": ("server", [None, "login.failed", "file.not_found"]),
    # vsftpd logs nothing of a handshake the client broke off: those sessions just stop
    "vsftpd.tls_required": ("server", [None, None, None, "tls.required"]),
    "vsftpd.badpw": ("server", ["login.failed"]),
    "proftpd.systemlog": ("server", ["login.failed"]),
    "proftpd.tlslog": ("server", ["client.tls", "client.tls", "tls.required"]),
    "proftpd.missing": ("server", ["reply.explained"]),  # the ExtendedLog has no reply text
    "pureftpd.badpw": ("server", ["login.failed"]),
    "text.forum_paste": ("text", ["transfer.storage"]),
    "text.dotnet_trace": ("text", ["file.permission"]),
}
# Every password any fixture shows in clear.
PASSWORDS = (
    "s3cret-pw", "wrong-pw-123", "mot-de-passe-secret", "hunter2-secret", "first-secret",
    "second-secret", "ftpdiag-interop-pw",
)  # fmt: skip


def _data(name: str) -> bytes:
    return (FIXTURES / f"{name}.log").read_bytes()


def _results(name: str, fmt: str | None = None) -> list[dict[str, Any]]:
    found = importers.read(_data(name), fmt)
    assert found is not None, name
    return analyze_records([r for s in found[1] for r in s], facts=True)


def _roots(results: list[dict[str, Any]]) -> list[str | None]:
    return [(r["root_cause"] or {}).get("rule") for r in results if r["event"] == "session.summary"]


def test_every_fixture_is_listed() -> None:
    """Each committed fixture has an expectation, and each expectation a fixture."""
    assert {p.stem for p in FIXTURES.glob("*.log")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_detected_and_diagnosed(name: str) -> None:
    """The fixture is detected as its format and each session gets the expected root cause."""
    fmt, roots = EXPECTED[name]
    detected = importers.detect(_data(name))
    assert detected is not None and detected.name == fmt
    assert _roots(_results(name)) == roots


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_other_detector_claims_the_fixture(name: str) -> None:
    """Every other detector scores the fixture 0 (the fallback at most its fallback score)."""
    own = EXPECTED[name][0]
    head = _data(name)
    for other in importers.formats().values():
        if other.name == own:
            assert other.detect(head) > 0, other.name
        elif other.name == FALLBACK:
            assert other.detect(head) <= 0.05
        else:
            assert other.detect(head) == 0.0, (other.name, name)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith(".ok")))
def test_healthy_logs_raise_no_alarm(name: str) -> None:
    """A download that worked, as each client logged it: no warning, no error."""
    results = _results(name)
    assert [r["rule"] for r in results if r.get("severity") in ("warning", "error")] == []
    ends = [r for r in results if r["event"] == "transfer.end"]
    assert all(r["outcome"] == 226 for r in ends)


@pytest.mark.parametrize("name", ["curl_v.nat", "lftp.nat", "filezilla.en.timeout"])
def test_clients_that_replaced_the_pasv_address(name: str) -> None:
    """curl, lftp and FileZilla say when they did not use the PASV reply's address: a NAT
    warning, as the proxy gives for the same server."""
    rules = [r["rule"] for r in _results(name) if r["event"] == "diagnosis"]
    assert "pasv.address_replaced" in rules


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_records_have_the_proxy_schema(name: str) -> None:
    """Rebuilt sessions open, close once, and pair replies with commands as the proxy does."""
    found = importers.read(_data(name))
    assert found is not None
    for session in found[1]:
        events = [r["event"] for r in session]
        assert events[0] == "session.open" and events[-1] == "session.close"
        assert events.count("session.close") == 1
        for record in session:
            if record["event"] == "reply":
                assert {"code", "text", "command", "arg", "state", "latency_ms"} <= set(record)
            if record["event"] == "client.error":
                assert {"kind", "message", "source", "channel"} <= set(record)


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ftpdiag", "analyze", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_no_password_in_any_output() -> None:
    """No clear-text password of any fixture appears in text, JSON or Markdown output."""
    paths = [str(p) for p in sorted(FIXTURES.glob("*.log"))]
    for output in ("text", "json", "markdown"):
        done = _cli(*paths, "--format", output)
        assert done.returncode == 0, done.stderr
        shown = done.stdout.decode() + done.stderr.decode()
        leaked = [pw for pw in PASSWORDS if pw in shown]
        assert not leaked, (output, leaked)


def test_json_output_is_the_proxy_log() -> None:
    """--format json starts with the detected input, then every record with its session."""
    done = _cli(str(FIXTURES / "lftp.missing.log"), "--format", "json")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0] == {
        "event": "analyze.input",
        "input": "lftp",
        "path": str(FIXTURES / "lftp.missing.log"),
        "sessions": 1,
    }
    events = [r["event"] for r in records[1:]]
    assert {"session.open", "command", "reply", "diagnosis", "session.close"} <= set(events)
    assert events[-1] == "session.summary"
    assert all(r["level"] in ("debug", "info", "warning", "error") for r in records[1:])
    retr = next(r for r in records if r["event"] == "reply" and r["command"] == "RETR")
    assert retr["code"] == 550 and retr["arg"] == "missing.txt" and retr["session"] == "s1"


def test_stdin_and_forced_input() -> None:
    """``-`` reads standard input; --input forces a format over detection."""
    paste = _data("curl_v.badpw")
    done = _cli("-", "--format", "markdown", stdin=paste)
    assert done.returncode == 0 and b"Login incorrect for user user" in done.stdout
    forced = _cli("-", "--input", "text", "--format", "json", stdin=paste)
    head = json.loads(forced.stdout.splitlines()[0])
    assert head["input"] == "text"
    wrong = _cli("-", "--input", "winscp", stdin=paste)
    assert wrong.returncode == 2 and b"nothing in it reads as winscp" in wrong.stderr


def test_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    """Text without FTP in it exits 2 with one line naming the formats tried, no traceback."""
    prose = tmp_path / "prose.txt"
    prose.write_text("Hello, my upload does not work. Please help!\n", encoding="utf-8")
    done = _cli(str(prose))
    assert done.returncode == 2
    assert b"no FTP commands or replies found" in done.stderr and b"Traceback" not in done.stderr


def test_markdown_of_ftpdiags_own_log(tmp_path: Path) -> None:
    """The Markdown block of a saved JSON-lines log quotes its commands and replies too."""
    found = importers.read(_data("lftp.badpw"))
    assert found is not None
    log = tmp_path / "session.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in found[1][0]), encoding="utf-8")
    done = _cli(str(log), "--format", "markdown")
    assert done.returncode == 0 and b"read as *jsonl*" in done.stdout
    assert b"< 530 Authentication failed." in done.stdout


def test_markdown_has_cause_evidence_and_fix() -> None:
    """The Markdown block names the root cause, quotes the log lines and gives the fix."""
    text = markdown(_results("tnftp.tls_required"), "ftp", "paste")
    assert "### Session s1:" in text and "```" in text
    assert "< 530 Non-anonymous sessions must use encryption." in text
    assert "**Fix:**" in text


def test_partial_logs_say_what_is_missing() -> None:
    """A log cut before the end, or starting mid-session, says so (an info, never a cause)."""
    lines = _data("lftp.missing").decode().splitlines()
    start = next(i for i, line in enumerate(lines) if "PWD" in line)
    cut = "\n".join(lines[start : start + 4]).encode()  # PWD, 257, TYPE I, 200
    found = importers.read(cut, "lftp")
    assert found is not None
    partial = [r for r in found[1][0] if r["event"] == "log.partial"]
    assert partial and set(partial[0]["unseen"]) == {"start", "end"}
    results = analyze_records(found[1][0], facts=True)
    rules = [r["rule"] for r in results if r["event"] == "diagnosis"]
    assert "log.partial" in rules and _roots(results) == [None]
    cut_at_retr = b"Command:\tUSER a\nResponse:\t331 pw\nCommand:\tRETR big.iso\n"
    found = importers.read(cut_at_retr)
    assert found is not None
    (partial,) = [r for r in analyze_records(found[1][0]) if r.get("rule") == "log.partial"]
    assert "The last command it shows, RETR big.iso, has no reply in it." in partial["explanation"]
    assert not any(r.get("rule") == "protocol.unsolicited" for r in results)


def test_healthy_session_has_no_root_cause() -> None:
    """A clean transfer rebuilt from a log has no error diagnosis and no root cause."""
    log = (
        b"> 220 ready\n"
        b"Status:\tConnecting to 127.0.0.1:21...\n"
        b"Response:\t220 ready\nCommand:\tUSER u\nResponse:\t331 pw\nCommand:\tPASS p4ss-word\n"
        b"Response:\t230 ok\nCommand:\tTYPE I\nResponse:\t200 Type set to I\n"
        b"Command:\tPASV\nResponse:\t227 Entering Passive Mode (127,0,0,1,4,1)\n"
        b"Command:\tRETR a.bin\nResponse:\t150 Opening\nResponse:\t226 Done\n"
        b"Status:\tFile transfer successful, transferred 1,024 bytes in 1 second\n"
        b"Command:\tQUIT\nResponse:\t221 bye\nStatus:\tDisconnected from server\n"
    )
    found = importers.read(log.split(b"\n", 1)[1])
    assert found is not None and found[0].name == "filezilla"
    records = found[1][0]
    end = next(r for r in records if r["event"] == "transfer.end")
    assert end["bytes"] == 1024 and end["outcome"] == 226
    results = analyze_records(records)
    assert _roots(results) == [None]
    assert not [r for r in results if r.get("severity") == "error"]


def test_paste_cleanup() -> None:
    """Quote markers, fences, indentation and CRLF are undone; curl's own '>' lines are kept."""
    quoted = b"> ```\r\n>     Command:\tUSER a\r\n>     Response:\t331 ok\r\n> ```\r\n"
    assert clean_lines(quoted) == ["Command:\tUSER a", "Response:\t331 ok"]
    curl = b"* Connected to h (1.2.3.4) port 21 (#0)\n> USER a\n< 331 ok\n"
    assert clean_lines(curl)[1:] == ["> USER a", "< 331 ok"]
    prompts = b"$ curl -v ftp://h/\nme@box:~/src$ lftp h\nC:\\Users\\a>ftp h\nPS C:\\> ftp h\n"
    assert clean_lines(prompts) == ["curl -v ftp://h/", "lftp h", "ftp h", "ftp h"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("> PASS hunter2", "> PASS ****"),
        ("0000: PASS hunter2", "0000: PASS ****"),
        ("> 2024-01-01 10:00:00.123 PASS hunter2", "> 2024-01-01 10:00:00.123 PASS ****"),
        ("530 Log in with USER and PASS first.", "530 Log in with USER and PASS first."),
        ("$ curl -u bob:hunter2 ftp://h/", "$ curl -u bob:**** ftp://h/"),
        ("lftp -u bob,hunter2 h", "lftp -u bob,**** h"),
        ("get ftp://bob:hunter2@h/x", "get ftp://bob:****@h/x"),
        ('    ftp.login("bob", "hunter2")', '    ftp.login("bob", "****")'),
        ("password = hunter2", "password = ****"),
        ("Password:\n\n230 User logged in.", "Password:\n\n230 User logged in."),
    ],
)
def test_redaction(line: str, expected: str) -> None:
    """Passwords in commands, URLs, curl/lftp options and ftplib calls become ****."""
    assert redact(line) == expected


def test_registry_accepts_binary_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """A format that recognises magic bytes wins detection over every text format."""
    magic = b"\x89FAKE\r\n\x1a"
    fake = Format("fakebin", "test only", lambda head: 1.0 if head[:8] == magic else 0.0,
                  lambda data: [[{"event": "session.open", "session": "c1"}]])  # fmt: skip
    monkeypatch.setitem(importers.base._REGISTRY, "fakebin", fake)
    assert importers.detect(magic + b"\x00\xff" * 10) is fake
    assert importers.detect(_data("lftp.badpw")).name == "lftp"  # type: ignore[union-attr]


def test_captures_are_one_more_format(tmp_path: Path) -> None:
    """A pcap is detected by its magic bytes, from a file (mapped) or from standard input,
    and its sessions go through the same output as every other input."""
    from tests.capture_builder import Capture

    cap = Capture()
    ctl = cap.conversation(("192.0.2.9", 40000), ("192.0.2.1", 21)).open()
    ctl.s(b"220 Ready\r\n")
    ctl.c(b"USER diag\r\n")
    ctl.s(b"331 Password\r\n")
    ctl.c(b"PASS cap-secret\r\n")
    ctl.s(b"530 Login incorrect.\r\n")
    blob = cap.pcap()
    assert importers.detect(blob) is importers.formats()["capture"]
    path = tmp_path / "trace.bin"
    path.write_bytes(blob)
    for args, stdin in (([str(path)], None), (["-"], blob)):
        done = _cli(*args, "--format", "json", stdin=stdin)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in done.stdout.splitlines()]
        assert records[0]["input"] == "capture"
        assert _roots(records) == ["login.failed"] and b"cap-secret" not in done.stdout


def test_client_error_kinds() -> None:
    """Client messages map to the kinds of client.error (the table in client_errors.toml)."""
    from ftpdiag.importers.errors import kind_of

    assert kind_of("Connection attempt failed with ECONNREFUSED") == "refused"
    assert kind_of("Connection timed out after 20 seconds of inactivity") == "timeout"
    assert kind_of("socket.gaierror: [Errno -2] Name or service not known") == "dns"
    assert kind_of("GnuTLS error -15: An unexpected TLS packet was received.") == "tls"
    assert kind_of("ECONNRESET - Connection reset by peer") == "reset"
    assert kind_of("something odd") == "error"


def test_wrapped_and_cut_lines() -> None:
    """A FileZilla log wrapped at 70 columns reads as the original; one whose lines were cut
    at 60 characters still reads, and still finds the wrong password."""
    import textwrap

    original = _data("filezilla.fr.badpw").decode()
    wrapped = "\n".join(
        part for line in original.splitlines() for part in textwrap.wrap(line, 70) or [""]
    )
    assert wrapped != original
    cut = "\n".join(line[:60] for line in original.splitlines())
    for damaged in (wrapped, cut):
        found = importers.read(damaged.encode())
        assert found is not None and found[0].name == "filezilla"
        assert _roots(analyze_records(found[1][0])) == ["login.failed"]


@given(st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
@settings(max_examples=150, deadline=None)
def test_any_input_reads_without_error(data: bytes) -> None:
    """Whatever the input, detection and every format's reader return, never raise (the
    capture reader says CaptureError for what is no capture, which analyze reports)."""
    from ftpdiag.capture import CaptureError

    importers.detect(data)
    for fmt in importers.formats().values():
        try:
            sessions = fmt.read(data)
        except CaptureError:
            assert fmt.name == "capture"
            continue
        for session in sessions:
            analyze_records(session)


def test_console_forms_of_imported_facts() -> None:
    """client.error and log.partial read as sentences on the console, not key=value pairs."""
    from ftpdiag.console import ConsoleRenderer

    render = ConsoleRenderer(color=False)
    error = {"event": "client.error", "session": "s1", "kind": "refused", "source": "curl (7)",
             "message": "Failed to connect", "channel": "data"}  # fmt: skip
    assert render(error).endswith("✗ curl (7): Failed to connect (data connection)")
    partial = render({"event": "log.partial", "session": "s1", "unseen": ["start", "end"]})
    assert partial.endswith("the log does not show the session's start and end")
    assert "=" not in render(error) + partial


def test_filezilla_engines_are_sessions() -> None:
    """In FileZilla's log file each engine is a connection: interleaved lines are told apart."""
    log = (
        b"2026-01-05 10:00:00 77 1 Status: Resolving address of h\n"
        b"2026-01-05 10:00:00 77 1 Status: Connecting to 192.0.2.1:21...\n"
        b"2026-01-05 10:00:00 77 2 Status: Connecting to 192.0.2.1:21...\n"
        b"2026-01-05 10:00:00 77 1 Response: 220 hi\n"
        b"2026-01-05 10:00:00 77 2 Response: 220 hi\n"
        b"2026-01-05 10:00:01 77 2 Command: USER b\n"
        b"2026-01-05 10:00:01 77 1 Command: USER a\n"
        b"2026-01-05 10:00:01 77 1 Response: 331 pw\n"
        b"2026-01-05 10:00:01 77 2 Response: 530 no such user b\n"
    )
    found = importers.read(log)
    assert found is not None and [s[0]["session"] for s in found[1]] == ["s1", "s2"]
    replies = {
        s[0]["session"]: [(r["command"], r["arg"], r["code"]) for r in s if r["event"] == "reply"]
        for s in found[1]
    }
    assert replies == {
        "s1": [(None, None, 220), ("USER", "a", 331)],
        "s2": [(None, None, 220), ("USER", "b", 530)],
    }


def test_several_tracebacks_are_several_sessions() -> None:
    """Two ftplib tracebacks pasted together are two sessions, each with its own cause."""
    paste = _data("ftplib_traceback.badpw") + b"\n" + _data("ftplib_traceback.refused")
    assert _roots(_results_of(paste)) == ["login.failed", "client.refused"]


def _results_of(data: bytes) -> list[dict[str, Any]]:
    found = importers.read(data)
    assert found is not None
    return [r for session in found[1] for r in analyze_records(session)]


def test_labels_in_both_languages() -> None:
    """The analyze labels exist in English and Vietnamese with the same placeholders."""
    import re
    import tomllib

    shared = Path(importers.__file__).parent.parent / "rules" / "labels"
    labels = {
        lang: tomllib.loads((shared / f"{lang}.toml").read_text("utf-8"))["analyze"]
        for lang in ("en", "vi")
    }
    assert set(labels) == {"en", "vi"} and set(labels["en"]) == set(labels["vi"])
    for key, text in labels["en"].items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(
            re.findall(r"\{(\w+)\}", labels["vi"][key])
        )
    vi = markdown(_results("lftp.badpw"), "lftp", "paste", "vi")
    assert "Phiên s1:" in vi and "**Cách khắc phục:**" in vi


def test_rebuilt_log_reads_back_as_ftpdiags_own(tmp_path: Path) -> None:
    """The JSON of an imported log is an ftpdiag log: analysed again, the same diagnoses."""
    first = _cli(str(FIXTURES / "winscp.timeout.log"), "--format", "json")
    log = tmp_path / "rebuilt.jsonl"
    log.write_bytes(first.stdout)
    again = _cli(str(log), "--format", "json")
    assert again.returncode == 0, again.stderr

    def produced(out: bytes) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in out.splitlines()]
        kept = [r for r in records if r["event"] in ("diagnosis", "session.summary")]
        return [{k: v for k, v in r.items() if k != "level"} for r in kept]

    assert produced(again.stdout) == produced(first.stdout) != []


def test_client_error_table_uses_known_kinds() -> None:
    """Every kind in client_errors.toml (and curl's exit-code table) is one the README lists."""
    import tomllib

    from ftpdiag.importers import curl
    from ftpdiag.importers.errors import KINDS

    table = tomllib.loads(
        (Path(importers.__file__).parent / "client_errors.toml").read_text("utf-8")
    )
    assert {p["kind"] for p in table["pattern"]} == KINDS
    assert set(curl._EXIT_KINDS.values()) <= KINDS


# Letters, digits, punctuation and symbols (no spaces); URL passwords come %-encoded, so '@'
# and '/' do not occur raw, and quotes would end the string they are written in.
_SECRET_CHARS = st.characters(
    whitelist_categories=("L", "N", "P", "S"), blacklist_characters="\"'@/*\\"
)


@given(st.text(_SECRET_CHARS, min_size=6, max_size=24))
@settings(max_examples=200, deadline=None)
def test_redaction_of_any_password(password: str) -> None:
    """Whatever the password's characters, no line form that carries it keeps it."""
    lines = [
        f"> PASS {password}",
        f"Command:\tPASS {password}",
        f"---> PASS {password}",
        f"curl -v -u bob:{password} ftp://h/x",
        f"lftp -u bob,{password} ftp://h",
        f"get ftp://bob:{password}@h/x",
        f'    ftp.login("bob", "{password}")',
        f"password={password}",
    ]
    for line in lines:
        assert password not in redact(line), line


def test_console_form_of_a_notice() -> None:
    """client.notice reads as a sentence on the console."""
    from ftpdiag.console import ConsoleRenderer

    said = "Address returned by PASV seemed to be incorrect"
    notice = {"event": "client.notice", "session": "s1", "kind": "pasv_address",
              "source": "lftp", "message": said}  # fmt: skip
    assert ConsoleRenderer(color=False)(notice).endswith(f"⚠ lftp: {said}")


def test_report_reads_pasted_logs(tmp_path: Path) -> None:
    """``ftpdiag report`` reads what ``analyze`` reads: a FileZilla log becomes a report with
    the same root cause, and no password."""
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "report", str(FIXTURES / "filezilla.fr.badpw.log"),
         "-o", str(out)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert "Login incorrect for user marie" in html and "mot-de-passe-secret" not in html
