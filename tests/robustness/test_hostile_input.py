"""Hostile input from either side: over-long and unterminated lines, NUL bytes, invalid UTF-8,
malformed reply codes, endless multi-line replies, unsolicited replies, garbage data-channel
addresses and 10,000 pipelined commands.

Each case must leave a fact or a diagnosis, give the client a bounded response, log no
``proxy.internal_error``, and leave the proxy serving new sessions.
"""

from __future__ import annotations

import ftplib
import io
import select
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_servers import FakeFTPServer, make_file
from tests.robustness.conftest import (
    HEALTHY_NAME,
    HEALTHY_SHA,
    TIMEOUT,
    RawClient,
    Rig,
    Script,
    ScriptedUpstream,
    UpstreamConn,
    log_summary,
    observe,
    rss_bytes,
    sha256,
    silent_close,
    start_rig,
)

pytestmark = pytest.mark.timeout(60)


def assert_still_serves(rig: Rig) -> None:
    """A brand-new session on the same proxy logs in and downloads a verified file."""
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*rig.address, timeout=TIMEOUT)
    ftp.login("after", "after-pw")
    out = io.BytesIO()
    assert ftp.retrbinary(f"RETR {HEALTHY_NAME}", out.write).startswith("226")
    assert sha256(out.getvalue()) == HEALTHY_SHA
    ftp.quit()


def nothing_pending(client: RawClient, seconds: float) -> bool:
    """True when the proxy sent nothing for ``seconds``."""
    return not client.buf and not select.select([client.sock], [], [], seconds)[0]


def finish(rig: Rig, sid: str, what: str, phase: str, client_saw: str) -> list[dict[str, Any]]:
    """Common end of every case: no internal error, a row for the docs, a new session."""
    events = rig.events_of(sid)
    assert not rig.internal_errors(), rig.internal_errors()
    observe("Hostile input", what, phase, client_saw, log_summary(events))
    assert_still_serves(rig)
    return events


def facts(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def rules(events: list[dict[str, Any]]) -> set[str]:
    return {e["rule"] for e in events if e["event"] == "diagnosis"}


@pytest.fixture
def rig(upstream: ScriptedUpstream, make_rig: Any) -> Rig:
    """A proxy in front of the scripted upstream, with a small line limit."""
    return make_rig(upstream.address, max_line=1024)


@pytest.fixture
def victim(rig: Rig) -> Any:
    client = RawClient(rig.address)
    yield client
    client.close()


# ---- from the client ------------------------------------------------------------------------
def test_client_overlong_line(rig: Rig, upstream: ScriptedUpstream, victim: RawClient) -> None:
    """A command line over --max-line gets 500 from the proxy, is never forwarded, and the
    next command works."""
    sid = rig.session_of(victim.local)
    victim.login()
    victim.send(b"NOOP " + b"A" * 10_000)
    reply = victim.reply()
    assert reply.startswith(b"500 Command line too long"), reply
    assert victim.cmd("NOOP").startswith(b"200")
    assert not [line for line in upstream.received if line.startswith(b"NOOP A")]
    events = finish(
        rig, sid, "client line of 10 kB (limit 1 kB)", "logged in", "500, session goes on"
    )
    assert facts(events, "protocol.line_too_long")[0]["side"] == "client"
    assert "protocol.line_too_long" in rules(events)


def test_client_bytes_without_any_newline(
    rig: Rig, upstream: ScriptedUpstream, victim: RawClient
) -> None:
    """100 kB without a line end: one 500 while discarding, then the stream resynchronises."""
    sid = rig.session_of(victim.local)
    victim.login()
    victim.sock.sendall(b"X" * 100_000)
    assert victim.reply().startswith(b"500")
    assert nothing_pending(victim, 0.2)
    victim.sock.sendall(b"tail of the garbage\r\nNOOP\r\n")
    assert victim.reply().startswith(b"200")
    assert nothing_pending(victim, 0.1)
    events = finish(rig, sid, "100 kB without a line end", "logged in", "one 500, then normal")
    assert len(facts(events, "protocol.line_too_long")) == 1


def test_client_lines_without_crlf(rig: Rig, victim: RawClient) -> None:
    """A bare LF ends a command; a line with no terminator yet is simply waited for."""
    sid = rig.session_of(victim.local)
    victim.login()
    victim.sock.sendall(b"NOOP\n")
    assert victim.reply().startswith(b"200")
    victim.sock.sendall(b"NOOP")
    assert nothing_pending(victim, 0.3)
    victim.sock.sendall(b"\r\n")
    assert victim.reply().startswith(b"200")
    events = finish(rig, sid, "bare LF; a line whose end comes later", "logged in",
                    "200 each (the partial line is waited for)")
    assert [e["verb"] for e in facts(events, "command")][-2:] == ["NOOP", "NOOP"]


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b"NO\x00OP\r\n", "NO\ufffdOP"),
        (b"USER a\x00b\r\n", "a\ufffdb"),
        (b"CWD \xc3\x28\xa0\xa1\r\n", "\ufffd(\ufffd\ufffd"),
        (b"CWD caf\xc3\xa9-\xc3\r\n", "café-\ufffd"),
        (b"\xff\xf4\xff\xf2NOOP\r\n", "NOOP"),
    ],
    ids=["nul-in-verb", "nul-in-arg", "invalid-utf8", "truncated-utf8", "telnet-ip-dm"],
)
def test_client_odd_bytes_are_relayed_exactly(
    line: bytes, shown: str, rig: Rig, upstream: ScriptedUpstream, victim: RawClient
) -> None:
    """NUL, invalid UTF-8 and Telnet bytes reach the server untouched, are logged with U+FFFD
    (or stripped), and the server's answer comes back."""
    sid = rig.session_of(victim.local)
    victim.login()
    victim.sock.sendall(line)
    reply = victim.reply()
    assert reply[:1] in b"2345", reply
    assert line in upstream.received
    events = finish(rig, sid, f"client sends `{line!r}`", "logged in",
                    f"the server's {reply[:3].decode()}")
    command = facts(events, "command")[-1]
    assert shown in command["verb"] + " " + command["arg"], command


@pytest.mark.parametrize(
    "command",
    [
        "PORT",
        "PORT garbage",
        "PORT 127,0,0,1,999,1",
        "PORT 127,0,0,1,0,0",
        "PORT 300,0,0,1,4,1",
        "EPRT x",
        "EPRT |1|127.0.0.1|99999|",
        "EPRT |9|127.0.0.1|2000|",
        "EPRT |2|127.0.0.1|2000|",
        "EPRT |1|ftp.example.org|21|",
    ],
)
def test_client_garbage_data_address(
    command: str, rig: Rig, upstream: ScriptedUpstream, victim: RawClient
) -> None:
    """PORT/EPRT with garbage or out-of-range numbers: 501 from the proxy, never forwarded
    (nor resolved), diagnosed protocol.malformed_port; the session goes on."""
    sid = rig.session_of(victim.local)
    victim.login()
    reply = victim.cmd(command)
    assert reply.startswith(b"501"), reply
    assert not [ln for ln in upstream.received if ln[:4] in (b"PORT", b"EPRT")]
    assert victim.cmd("NOOP").startswith(b"200")
    events = finish(rig, sid, f"`{command}`", "logged in", "501, session goes on")
    assert facts(events, "protocol.bad_address")[0]["side"] == "client"
    assert "protocol.malformed_port" in rules(events)
    assert rig.live()[sid]["pipes"] == 0


@pytest.mark.parametrize("command", ["PASV garbage", "EPSV 99", "EPSV \xff"])
def test_client_garbage_passive_argument(
    command: str, rig: Rig, upstream: ScriptedUpstream, victim: RawClient
) -> None:
    """PASV/EPSV with a garbage argument gets a bounded answer and leaves nothing behind."""
    sid = rig.session_of(victim.local)
    victim.login()
    reply = victim.cmd(command)
    assert reply[:1] in b"245", reply
    assert victim.cmd("NOOP").startswith(b"200")
    finish(rig, sid, f"`{command}`", "logged in", f"{reply[:3].decode()}")


PIPELINED_SETUP = (
    "ftpdiag/core/session.py: a data-setup command (PASV/EPSV/PORT/EPRT) sent before the "
    "previous one was answered makes Session._new_setup abort the previous setup, whose "
    "DataClosed then removes it from Session._setups; when the server's reply to the first "
    "command arrives, _on_server_passive_reply or _on_server_active_reply "
    "(`self._setups[pending.pipe or 0]`) raises KeyError -> proxy.internal_error, 421, and "
    "session.close says 'client closed'"
)


@pytest.mark.parametrize(
    ("commands", "count"),
    [
        (b"PASV\r\nPASV\r\n", 2),
        (b"EPSV\r\nEPSV\r\n", 2),
        (b"PASV\r\nPORT 127,0,0,1,4,1\r\n", 2),
        (b"PORT 127,0,0,1,4,1\r\nPORT 127,0,0,1,4,2\r\n", 2),
        (b"PASV\r\n" * 1000, 1000),
    ],
    ids=["pasv-pasv", "epsv-epsv", "pasv-port", "port-port", "1000-pasv"],
)
def test_pipelined_data_setup_commands(
    commands: bytes, count: int, rig: Rig, victim: RawClient
) -> None:
    """Data-setup commands sent without waiting each get one reply, and at most the last
    setup's listener is left open."""
    sid = rig.session_of(victim.local)
    victim.login()
    victim.sock.sendall(commands)
    try:
        replies = [victim.reply() for _ in range(count)]
    except AssertionError:
        observe("Hostile input", f"{count} data-setup commands pipelined "
                f"(`{commands[:4].decode()}`…)", "logged in",
                "421 internal error, connection closed",
                log_summary(rig.events_of(sid)) + " (bug)")
        raise
    assert all(r[:1] in b"24" for r in replies), replies[:3]
    assert replies[-1][:1] == b"2"
    assert not rig.internal_errors(), rig.internal_errors()
    live = rig.live()[sid]
    assert live["pipes"] <= 1 and live["listeners"] <= 1, live
    finish(rig, sid, f"{count} data-setup commands pipelined", "logged in", "one reply each")


def test_ten_thousand_pipelined_commands(tmp_path: Path) -> None:
    """10,000 commands sent without waiting are all answered, in order, within a bounded
    time, with the proxy's memory bounded."""
    root = tmp_path / "root"
    root.mkdir()
    sha = make_file(root, "small.bin", 5000, seed=4)
    replies_seen: list[tuple[str | None, int]] = []
    errors: list[dict[str, Any]] = []

    def sink(event: str, fields: dict[str, Any]) -> None:
        if event == "reply":
            replies_seen.append((fields["command"], fields["code"]))
        elif event == "proxy.internal_error":
            errors.append(fields)

    cycle = [("NOOP", b"200 I successfully"), ("TYPE I", b"200 Type set to: Binary"),
             ("TYPE A", b"200 Type set to: ASCII"), ("SYST", b"215 "), ("PWD", b"257 ")]
    count = 10_000
    with FakeFTPServer(root=root) as server:
        rig = start_rig(server.address, sink=sink)
        try:
            client = RawClient(rig.address)
            client.login("user", "secret")
            payload = b"".join(cycle[i % 5][0].encode() + b"\r\n" for i in range(count))
            before = rss_bytes()
            started = time.monotonic()
            sender = threading.Thread(target=client.sock.sendall, args=(payload,), daemon=True)
            sender.start()
            for i in range(count):
                reply = client.reply(timeout=TIMEOUT)
                assert reply.startswith(cycle[i % 5][1]), (i, reply)
            elapsed = time.monotonic() - started
            sender.join(TIMEOUT)
            growth = rss_bytes() - before
            assert elapsed < 30, elapsed
            assert growth < 40 * 2**20, growth
            # The records of a batch follow its bytes within the same reactor call: the client
            # can hold the last reply before the proxy has logged the batch.
            deadline = time.monotonic() + TIMEOUT
            while len(replies_seen) < count + 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            verbs = [verb for verb, _ in replies_seen[3:]]
            assert verbs == [cycle[i % 5][0].split()[0] for i in range(count)]
            client.close()
            assert not errors
            ftp = ftplib.FTP(timeout=TIMEOUT)
            ftp.connect(*rig.address, timeout=TIMEOUT)
            ftp.login("user", "secret")
            out = io.BytesIO()
            ftp.retrbinary("RETR small.bin", out.write)
            assert sha256(out.getvalue()) == sha
            ftp.quit()
        finally:
            rig.handle.stop()
    observe("Hostile input", "10,000 pipelined commands (pyftpdlib upstream)", "logged in",
            f"all 10,000 replies in order in {elapsed:.1f} s",
            f"10,000 `command`/`reply` pairs, each paired right; RSS +{growth / 2**20:.0f} MiB")


# ---- from the server ------------------------------------------------------------------------
def armed(upstream: ScriptedUpstream, rig: Rig, **script: Any) -> tuple[RawClient, str]:
    upstream.arm(Script(**script))
    client = RawClient(rig.address)
    return client, rig.session_of(client.local)


def test_server_overlong_line(upstream: ScriptedUpstream, rig: Rig) -> None:
    """A reply line over --max-line: 421 to the client and the session ends."""
    client, sid = armed(upstream, rig, replies={"NOOP": b"200 " + b"x" * 20_000 + b"\r\n"})
    try:
        client.login()
        client.send("NOOP")
        outcome = client.outcome()
        assert outcome.lines[-1].startswith(b"421") and outcome.end == "closed", outcome
        assert rig.close_of(sid)["reason"] == "server line too long"
        events = finish(
            rig, sid, "server reply line of 20 kB (limit 1 kB)", "NOOP", outcome.summary
        )
        assert "protocol.line_too_long" in rules(events)
    finally:
        client.close()


def _unterminated_then_close(conn: UpstreamConn) -> bool:
    conn.send(b"200 this line never ends")
    silent_close(conn.sock)
    return True


def test_server_reply_without_line_end(upstream: ScriptedUpstream, rig: Rig) -> None:
    """A reply with no line end followed by a close: 421 and a closed connection."""
    client, sid = armed(upstream, rig, replies={"NOOP": _unterminated_then_close})
    try:
        client.login()
        client.send("NOOP")
        outcome = client.outcome()
        assert outcome.lines[-1].startswith(b"421") and outcome.end == "closed", outcome
        assert rig.close_of(sid)["reason"] == "server closed"
        finish(rig, sid, "server reply without line end, then close", "NOOP", outcome.summary)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("verb", "raw", "text"),
    [
        ("NOOP", b"200 bare LF\n", "bare LF"),
        ("NOOP", b"200 N\x00UL\r\n", "N\ufffdUL"),
        ("PWD", b'257 "/\xc3\x28\xa0" is cwd\r\n', '"/\ufffd(\ufffd" is cwd'),
    ],
    ids=["bare-lf", "nul", "invalid-utf8"],
)
def test_server_odd_bytes_relayed_exactly(
    verb: str, raw: bytes, text: str, upstream: ScriptedUpstream, rig: Rig
) -> None:
    """Bare LF, NUL and invalid UTF-8 in a reply reach the client byte for byte and are
    logged readably."""
    client, sid = armed(upstream, rig, replies={verb: raw})
    try:
        client.login()
        assert client.cmd(verb) == raw
        assert client.cmd("NOOP").startswith(b"200")
        events = finish(rig, sid, f"server reply `{raw!r}`", verb, "the exact bytes")
        reply = next(e for e in facts(events, "reply") if e["command"] == verb)
        assert reply["text"] == text
    finally:
        client.close()


@pytest.mark.parametrize(
    "bad", [b"20 short", b"2000 long", b"abc def", b"", b"2x0 mixed", b"200"],
    ids=["two-digits", "four-digits", "letters", "empty", "mixed", "code-only"],
)
def test_server_reply_code_not_three_digits(
    bad: bytes, upstream: ScriptedUpstream, rig: Rig
) -> None:
    """A line without a three-digit code is relayed and flagged; the real reply after it is
    still paired with the command, and so is the next one."""
    client, sid = armed(upstream, rig, replies={"NOOP": bad + b"\r\n200 real\r\n"})
    try:
        client.login()
        client.send("NOOP")
        first = client.readline()
        if bad == b"200":  # a bare code is a valid (if terse) reply: RFC 959 allows no text
            assert first == b"200\r\n"
        else:
            assert first == bad + b"\r\n"
            assert client.reply() == b"200 real\r\n"
        client.send("PWD")
        assert client.reply().startswith(b"2")
        events = finish(
            rig, sid, f"server line `{bad.decode()}`", "NOOP", "the line, then the real reply"
        )
        paired = [(e["command"], e["code"]) for e in facts(events, "reply")]
        if bad != b"200":
            assert ("NOOP", 200) in paired and paired[-1] == ("PWD", 257), paired
            assert "protocol.malformed_reply" in rules(events)
    finally:
        client.close()


def _endless_multiline(conn: UpstreamConn) -> bool:
    conn.send(b"211-the beginning\r\n")
    for i in range(200_000):
        conn.send(b" line %d of a reply that never ends\r\n" % i)
    return True


def test_server_multiline_never_ends(upstream: ScriptedUpstream, make_rig: Any) -> None:
    """A multi-line reply that never terminates: 421 once it passes the reply limit."""
    rig = make_rig(upstream.address, max_reply_bytes=64 * 1024)
    client, sid = armed(upstream, rig, replies={"STAT": _endless_multiline})
    try:
        client.login()
        client.send("STAT")
        started = time.monotonic()
        outcome = client.outcome()
        assert outcome.lines[-1].startswith(b"421") and outcome.end == "closed", outcome
        assert time.monotonic() - started < TIMEOUT
        assert rig.close_of(sid)["reason"] == "server reply too long"
        events = finish(rig, sid, "multi-line reply that never ends (limit 64 kB)", "STAT",
                        outcome.summary)
        assert "protocol.reply_too_long" in rules(events)
    finally:
        client.close()


def test_server_unsolicited_reply(upstream: ScriptedUpstream, rig: Rig) -> None:
    """A reply nobody asked for is relayed and flagged, and does not shift the pairing."""
    client, sid = armed(upstream, rig, after_login=b"200 surprise\r\n",
                        replies={"NOOP": b"200 one\r\n200 two\r\n"})
    try:
        client.login()
        assert client.reply() == b"200 surprise\r\n"
        client.send("NOOP")
        assert client.reply() == b"200 one\r\n"
        assert client.reply() == b"200 two\r\n"
        assert client.cmd("PWD").startswith(b"257")
        events = finish(rig, sid, "replies nobody asked for", "logged in", "relayed as sent")
        replies = [(e["command"], e["code"], e["unsolicited"]) for e in facts(events, "reply")]
        assert replies[-4:] == [(None, 200, True), ("NOOP", 200, False), (None, 200, True),
                                ("PWD", 257, False)], replies
        assert "protocol.unsolicited" in rules(events)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("verb", "raw"),
    [
        ("PASV", b"227 Entering Passive Mode (garbage).\r\n"),
        ("PASV", b"227 Entering Passive Mode (127,0,0,1,300,7).\r\n"),
        ("PASV", b"227 Entering Passive Mode (256,0,0,1,4,1).\r\n"),
        ("PASV", b"227 Entering Passive Mode (127,0,0,1,0,0).\r\n"),
        ("EPSV", b"229 Entering Extended Passive Mode (|||99999|).\r\n"),
        ("EPSV", b"229 Entering Extended Passive Mode (|||0|).\r\n"),
        ("EPSV", b"229 Entering Extended Passive Mode (|||abc|).\r\n"),
        ("EPSV", b"229 Entering Extended Passive Mode (!!!123|).\r\n"),
    ],
)
def test_server_garbage_passive_reply(
    verb: str, raw: bytes, upstream: ScriptedUpstream, rig: Rig
) -> None:
    """227/229 with garbage or out-of-range numbers: flagged protocol.malformed_pasv, no
    listener left behind, the session goes on."""
    client, sid = armed(upstream, rig, replies={verb: raw})
    try:
        client.login()
        reply = client.cmd(verb)
        assert reply[:1] in b"245", reply
        assert client.cmd("NOOP").startswith(b"200")
        live = rig.live()[sid]
        assert live["listeners"] == 0 and live["pipes"] == 0, live
        events = finish(rig, sid, f"server `{raw.decode().strip()}`", verb,
                        "the server's reply, relayed" if reply == raw else reply[:3].decode())
        assert facts(events, "protocol.bad_address")[0]["side"] == "server"
        assert "protocol.malformed_pasv" in rules(events)
    finally:
        client.close()


# ---- fuzzing ------------------------------------------------------------------------------
LINE = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"") + b"\r\n")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, min_size=1, max_size=8))
def test_fuzz_client_lines(lines: list[bytes], upstream: ScriptedUpstream) -> None:
    """Random command lines from a logged-in client: every line answered, no internal error."""
    rig = start_rig(upstream.address)
    try:
        client = RawClient(rig.address)
        client.login()
        safe = [ln for ln in lines if not ln.lstrip().upper().startswith((b"QUIT", b"RETR",
                                                                           b"STOR", b"LIST"))]
        for line in safe:
            client.sock.sendall(line)
        # every line gets exactly one reply, whether from the proxy or the server
        for _ in safe:
            assert client.reply()[:1] in b"12345"
        assert client.cmd("NOOP").startswith(b"200")
        client.close()
        assert not rig.internal_errors()
    finally:
        rig.handle.stop()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(min_size=1, max_size=300))
def test_fuzz_server_reply(raw: bytes, upstream: ScriptedUpstream) -> None:
    """Random bytes as the server's answer to NOOP: a bounded outcome, no internal error, and
    the proxy serves the next session."""
    rig = start_rig(upstream.address, idle_timeout=1.0)
    try:
        upstream.arm(Script(replies={"NOOP": raw + b"\r\n200 after\r\n"}))
        client = RawClient(rig.address)
        client.login()
        client.send("NOOP")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = client.readline(timeout=TIMEOUT)
            if line is None or line.startswith((b"200 after", b"421")):
                break
        client.close()
        assert not rig.internal_errors()
        assert_still_serves(rig)
    finally:
        rig.handle.stop()
