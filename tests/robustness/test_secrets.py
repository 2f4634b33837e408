"""Passwords never reach any output: captured events, the JSON log file, the console.

A property test logs in with random passwords (and a wrong one) through the in-process proxy;
the CLI runs once with a log file and the console on stderr; and the error paths are covered:
the password sent while the upstream is unreachable, and the password in an over-long line.
"""

from __future__ import annotations

import ftplib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, error

from tests.fake_servers import FakeFTPServer, make_file
from tests.robustness.conftest import (
    TIMEOUT,
    ProxyProcess,
    RawClient,
    Rig,
    closed_port,
    observe,
    observed_if_failing,
    start_rig,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

#: Printable, no space/CR/LF; mostly ASCII but some letters beyond it (RFC 2640 clients).
PASSWORD_CHARS = st.characters(
    min_codepoint=0x21,
    max_codepoint=0x4FF,
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"),
)
PASSWORDS = st.text(PASSWORD_CHARS, min_size=6, max_size=40)


def strings(value: Any) -> Iterator[str]:
    """Every string inside a record (keys and values, recursively)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def assert_absent(
    secret: str, *, events: list[dict[str, Any]] | None = None, texts: dict[str, str] | None = None
) -> None:
    """``secret`` appears in no event (raw strings, and both JSON renderings) and no text."""
    needles = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for record in events or []:
        for text in strings(record):
            assert secret not in text, f"password leaked in {record.get('event')}: {record}"
        for rendered in (json.dumps(record), json.dumps(record, ensure_ascii=False)):
            for needle in needles:
                assert needle not in rendered, f"password leaked in {record.get('event')}"
    for name, text in (texts or {}).items():
        for needle in needles:
            assert needle not in text, f"password leaked in {name}"


def login(address: tuple[str, int], password: str) -> str:
    """Log in with ftplib; return the final reply (230 or the 530 error text)."""
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*address, timeout=TIMEOUT)
    try:
        reply = ftp.login("user", password)
        ftp.pwd()
        ftp.quit()
        return reply
    except ftplib.error_perm as exc:
        return str(exc)
    finally:
        ftp.close()


def run_logins(password: str) -> list[dict[str, Any]]:
    """Log in right then wrong through a fresh proxy; return every event it captured."""
    with tempfile.TemporaryDirectory() as root, FakeFTPServer(
        root=Path(root), password=password
    ) as server:
        rig = start_rig(server.address)
        try:
            assert login(rig.address, password).startswith("230")
            assert login(rig.address, password + "!").startswith("530")
            wait_until(
                lambda: sum(e["event"] == "session.summary" for e in rig.events) == 2,
                TIMEOUT,
                "both sessions summarised",
            )
            assert rig.handle.diagnoses("login.failed")
            return list(rig.events)
        finally:
            rig.handle.stop()


_VOCABULARY: list[str] = []


def vocabulary() -> str:
    """Everything a login session logs anyway (keys, texts, numbers), from one reference run:
    a password made of that text could not be told apart from the log's own words."""
    if not _VOCABULARY:
        events = run_logins("Reference-Pw-0")
        _VOCABULARY.append("\n".join(
            part
            for e in events
            for part in (json.dumps(e), json.dumps(e, ensure_ascii=False), *strings(e))
        ))
    return _VOCABULARY[0]


@settings(max_examples=25, deadline=None)
@given(password=PASSWORDS)
@example(password="12345678")
@example(password="3.14159265358979")
@example(password="-4200e7")
@example(password="PASS1234")
@example(password="xPASSxPASSx")
@example(password="pass:PASS")
def test_password_never_logged(password: str) -> None:
    """A random password (right, then wrong) appears in no captured event."""
    wrong = password + "!"
    assume(password not in vocabulary())
    events = run_logins(password)
    assert [e for e in events if e["event"] == "command" and e["verb"] == "PASS"]
    assert_absent(password, events=events)
    assert_absent(wrong, events=events)


@pytest.mark.parametrize(
    "spelling",
    [
        b"PASS %s\r\n",
        b"pass %s\r\n",
        b"Pass %s\r\n",
        b"PASS  %s\r\n",
        b"\xff\xf4\xff\xf2PASS %s\r\n",
    ],
    ids=["upper", "lower", "mixed", "two-spaces", "telnet-prefix"],
)
def test_password_spellings_redacted(spelling: bytes, tmp_path: Path) -> None:
    """PASS in any case, with extra spaces, after Telnet bytes, or split over several TCP
    segments is redacted."""
    password = "Sp3ll!ng-Secret"
    with FakeFTPServer(root=tmp_path, password=password) as server:
        rig = start_rig(server.address)
        try:
            client = RawClient(rig.address)
            assert client.reply().startswith(b"220")
            assert client.cmd("USER user").startswith(b"331")
            line = spelling % password.encode()
            for i in range(0, len(line), 3):  # three bytes per segment
                client.sock.sendall(line[i : i + 3])
            assert client.reply()[:1] in b"25"
            client.close()
            rig.handle.wait_for("session.close")
            assert_absent(password, events=rig.events)
        finally:
            rig.handle.stop()


def failing_resolver_later(host: str) -> defer.Deferred[str]:
    """Stands in for DNS: fails after 0.3 s, so commands arrive before the failure."""
    from ftpdiag.testing import _reactor

    d: defer.Deferred[str] = defer.Deferred()
    _reactor().callLater(0.3, d.errback, error.DNSLookupError(f"{host}: no such host"))
    return d


def test_password_sent_while_upstream_unreachable() -> None:
    """USER/PASS pipelined before the upstream failed: 421, and the password nowhere."""
    password = "Unre4chable-Secret"
    rig: Rig = start_rig(("ftp.invalid", 21), resolver=failing_resolver_later)
    try:
        client = RawClient(rig.address)
        client.sock.sendall(f"USER user\r\nPASS {password}\r\nNOOP\r\n".encode())
        outcome = client.outcome()
        assert outcome.lines[-1].startswith(b"421 ftpdiag: cannot reach the server")
        client.close()
        rig.handle.wait_for("session.close")
        commands = [e for e in rig.events if e["event"] == "command"]
        assert [c["verb"] for c in commands] == ["USER", "PASS", "NOOP"]
        assert commands[1]["arg"] == "****"
        assert_absent(password, events=rig.events)
    finally:
        rig.handle.stop()


OVERLONG_LEAK = (
    "ftpdiag/core/session.py Session._on_client_bytes logs protocol.line_too_long with "
    "head=line_text(item.head)[:40] (and the diagnosis copies it into its explanation and "
    "evidence): for an over-long 'PASS <password>…' line that head is 'PASS ' plus the first "
    "35 characters of the password, unredacted; the head of a PASS/ACCT line should be "
    "logged as 'PASS ****'"
)


def test_password_in_overlong_line(tmp_path: Path) -> None:
    """A PASS line over --max-line is refused without its password reaching any event."""
    password = "L0ng-Line-Secret"
    with FakeFTPServer(root=tmp_path, password=password) as server:
        rig = start_rig(server.address, max_line=64)
        try:
            client = RawClient(rig.address)
            assert client.reply().startswith(b"220")
            assert client.cmd("USER user").startswith(b"331")
            reply = client.cmd(f"PASS {password}{'x' * 100}")
            assert reply.startswith(b"500")
            client.close()
            rig.handle.wait_for("session.close")
            assert rig.handle.wait_for("protocol.line_too_long")["side"] == "client"
            with observed_if_failing(
                "Secrets", "`PASS <password>` line over `--max-line`", "login", "500",
                "`protocol.line_too_long` and its diagnosis quote `PASS ` + the first 35 "
                "characters of the password",
            ):
                assert_absent(password, events=rig.events)
        finally:
            rig.handle.stop()


def test_cli_outputs_never_show_the_password(tmp_path: Path) -> None:
    """Through the CLI (JSON log file, console on stderr with -v): a good login, a wrong one,
    a transfer, and a password sent to an unreachable upstream leave no trace of either."""
    password = "C1i-Secret!pw%d"
    root = tmp_path / "root"
    root.mkdir()
    make_file(root, "a.bin", 3000, seed=5)
    with FakeFTPServer(root=root, password=password) as server:
        proxy = ProxyProcess(tmp_path, "--upstream", f"127.0.0.1:{server.address[1]}", "-v",
                             log_format="console", name="good")
        try:
            assert login(proxy.address, password).startswith("230")
            assert login(proxy.address, password + "?").startswith("530")
            proxy.wait_for("diagnosis", rule="login.failed")
        finally:
            assert proxy.stop() == 0
    down = ProxyProcess(tmp_path, "--upstream", f"127.0.0.1:{closed_port()}", "-v",
                        log_format="console", name="down")
    try:
        client = RawClient(down.address)
        client.sock.sendall(f"USER user\r\nPASS {password}\r\n".encode())
        assert client.outcome().lines[0].startswith(b"421")
        client.close()
        down.wait_for("session.close")
    finally:
        assert down.stop() == 0
    for proc in (proxy, down):
        records = proc.records()
        stderr = proc.stderr()
        assert "PASS" in stderr or proc is down
        texts = {f"{proc.log.name}": proc.log.read_text(encoding="utf-8"), "stderr": stderr}
        assert_absent(password, events=records, texts=texts)
        assert_absent(password + "?", texts=texts)
    assert "PASS ****" in proxy.stderr()
    observe("Secrets", "password in PASS (right, wrong, upstream down)", "login",
            "230 / 530 / 421", "`command` PASS `****` in the JSON log and on the console")
