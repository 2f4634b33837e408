"""The replay server's behaviour beyond the acceptance scenarios: the pytest fixture as a user
meets it, the ``ftpdiag replay`` command, recorded timing, kept passive addresses, active mode
(loopback only), and records written by hand (any importer's records replay the same way)."""

from __future__ import annotations

import ftplib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.testing import ProxyHandle, ReplayHandle
from tests.fake_servers import FakeFTPServer, GreetingDelay, make_file
from tests.test_replay_e2e import record, replay_matches
from tests.test_rules_e2e import settle

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(60)

Proxy = Callable[..., ProxyHandle]
Replay = Callable[..., ReplayHandle]
TIMEOUT = 5.0


def line(event: str, **fields: Any) -> str:
    return json.dumps({"event": event, "session": "ab12", **fields}) + "\n"


def reply(code: int, text: str, command: str | None, latency: float = 0.5) -> str:
    return line("reply", code=code, text=text, command=command, latency_ms=latency)


#: A hand-written log: the shape any importer produces (no proxy involved).
LOGIN_LOG = "".join(
    [
        line("session.open", client="10.1.2.3:5000", upstream="192.0.2.10:21"),
        reply(220, "Welcome to the recorded server.", None),
        line("command", verb="USER", arg="alice"),
        reply(331, "Password required.", "USER"),
        line("command", verb="PASS", arg="****"),
        reply(230, "Welcome, alice.", "PASS"),
        line("command", verb="PASV", arg=""),
        reply(227, "Entering Passive Mode (192,0,2,10,195,80).", "PASV"),
        line("command", verb="QUIT", arg=""),
        reply(221, "Goodbye.", "QUIT"),
        line("control.closed", side="server"),
    ]
)

FIXTURE_EXAMPLE = """\
import ftplib

def test_login_against_the_recording(ftpdiag_replay):
    replay = ftpdiag_replay("session.jsonl")
    ftp = ftplib.FTP(timeout=5); ftp.connect(*replay.address)
    assert ftp.login("alice", "any password").startswith("230")
    {extra}
    ftp.sendcmd("PASV"); ftp.quit()
"""


@pytest.mark.parametrize(
    ("extra", "outcome"),
    [
        ("", {"passed": 1}),
        (
            "try: ftp.sendcmd('NLST')  # unmatched: 500, which this client shrugs off\n"
            "    except ftplib.error_perm: pass",
            {"failed": 1},
        ),
    ],
    ids=["matched", "unmatched"],
)
def test_fixture_fails_on_unexpected_command(
    pytester: pytest.Pytester, extra: str, outcome: dict[str, int]
) -> None:
    """A command the recording did not expect fails the test, naming expected and actual."""
    pytester.makefile(".jsonl", session=LOGIN_LOG)
    pytester.makepyfile(test_replay=FIXTURE_EXAMPLE.format(extra=extra or "pass"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(**outcome)
    if extra:
        result.stdout.fnmatch_lines(["*replay of session ab12: expected PASV, got NLST*"])


def test_hand_written_records_and_passive_rewrite(tmp_path: Path, ftpdiag_replay: Replay) -> None:
    """Records from any source replay; the recorded 192.0.2.10 becomes the live loopback
    listener, or stays as recorded with keep_addresses (nothing is dialled either way)."""
    log = tmp_path / "s.jsonl"
    log.write_text(LOGIN_LOG)
    for keep, expected in ((False, "127.0.0.1"), (True, "192.0.2.10")):
        replay = ftpdiag_replay(log, keep_addresses=keep)
        ftp = ftplib.FTP(timeout=TIMEOUT)
        assert ftp.connect(*replay.address) == "220 Welcome to the recorded server."
        ftp.login("alice", "not the recorded one")
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        assert host == expected and (keep or port != 195 * 256 + 80)
        if not keep:
            socket.create_connection((host, port), timeout=TIMEOUT).close()  # it listens
        assert ftp.quit() == "221 Goodbye."


def test_greeting_delay_recorded_timing(
    tmp_path: Path, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay
) -> None:
    """120 then 220 half a second later: fast by default, at the recorded gap (scaled by
    speed) with timing='recorded', and then ftpdiag gives the same warning (no root cause: the
    session worked)."""
    served = tmp_path / "root"
    served.mkdir()

    def client(address: tuple[str, int]) -> list[Any]:
        ftp = ftplib.FTP(timeout=TIMEOUT)
        seen = [ftp.connect(*address), ftp.getresp()]
        seen.append(ftp.quit())
        return seen

    with FakeFTPServer(served, faults=[GreetingDelay(0.5)]) as server:
        live = record(ftpdiag_proxy, server.address, client, tmp_path / "s.jsonl")
    assert live.cause == [None]  # a warning: the session still worked
    for options, low, high in (({}, 0, 0.2), ({"timing": "recorded", "speed": 5}, 0.08, 0.3)):
        replay = ftpdiag_replay(tmp_path / "s.jsonl", **options)
        started = time.monotonic()
        assert client(replay.address) == live.direct
        assert low <= time.monotonic() - started < high
    proxy = ftpdiag_proxy(ftpdiag_replay(tmp_path / "s.jsonl", timing="recorded").address)
    assert client(proxy.address) == live.proxied
    settle(proxy)
    assert proxy.events[-1]["root_cause"] is None
    assert "greeting.delayed" in [d["rule"] for d in proxy.diagnoses()]


def test_active_mode_loopback_only(
    tmp_path: Path, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay
) -> None:
    """PORT to a loopback address: the replay connects and sends the recorded size (straight,
    and to ftpdiag's own PORT in front of it); PORT to any other address: refused with 425
    and reported, never dialled."""
    served = tmp_path / "root"
    make_file(served, "small.bin", 1000, seed=2)

    def client(address: tuple[str, int]) -> list[Any]:
        ftp = ftplib.FTP(timeout=TIMEOUT)
        ftp.set_pasv(False)
        seen = [ftp.connect(*address), ftp.login("user", "secret")]
        chunks: list[bytes] = []
        seen.append(ftp.retrbinary("RETR small.bin", chunks.append))
        seen += [len(b"".join(chunks)), ftp.quit()]
        return seen

    with FakeFTPServer(served) as server:
        live = record(ftpdiag_proxy, server.address, client, tmp_path / "s.jsonl")
    assert live.direct[-2] == 1000
    replay = replay_matches(ftpdiag_proxy, ftpdiag_replay, tmp_path / "s.jsonl", client, live)
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*replay.address)
    ftp.login("user", "secret")
    ftp.voidcmd("TYPE I")
    assert ftp.sendcmd("PORT 192,0,2,1,4,1").startswith("200")
    with pytest.raises(ftplib.error_temp, match=r"^425 Replay: will not connect to 192.0.2.1:1025"):
        ftp.sendcmd("RETR small.bin")
    ftp.close()
    assert {"event": "replay.refused_dial", "address": "192.0.2.1:1025"} in replay.reports


# ---- the command ---------------------------------------------------------------------------------
def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ftpdiag", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False, **kwargs)


def test_cli_bad_input(tmp_path: Path) -> None:
    """A missing file, a file with no session, binary junk, an unknown session: one error
    line, status 2."""
    (tmp_path / "empty.jsonl").write_text(line("proxy.listen", listen="x"))
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)))
    (tmp_path / "s.jsonl").write_text(LOGIN_LOG)
    cases = [
        ([str(tmp_path / "nope.jsonl")], "cannot read"),
        ([str(tmp_path / "empty.jsonl")], "no FTP session"),
        ([str(tmp_path / "junk.bin")], "not a log or a capture"),
        ([str(tmp_path / "s.jsonl"), "--session", "zz"], "no session 'zz'"),
    ]
    for args, message in cases:
        done = run_cli("replay", *args)
        assert done.returncode == 2 and message in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_cli_serves_reports_and_stops(tmp_path: Path) -> None:
    """``ftpdiag replay`` prints its address and plan, answers, reports an unexpected command
    on the console, and exits 0 on SIGTERM."""
    log = tmp_path / "s.jsonl"
    log.write_text(LOGIN_LOG)
    cmd = [sys.executable, "-m", "ftpdiag", "replay", str(log), "--log-format", "json"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stderr is not None
        listen = json.loads(proc.stderr.readline())
        assert listen["event"] == "replay.listen" and listen["session"] == "ab12"
        assert listen["commands"] == 4 and listen["greeting"] == 220
        host, port = listen["listen"].rsplit(":", 1)
        ftp = ftplib.FTP(timeout=TIMEOUT)
        ftp.connect(host, int(port))
        ftp.login("alice", "x")
        with pytest.raises(ftplib.error_perm, match=r"^500 .*expects PASV"):
            ftp.sendcmd("CWD /elsewhere")
        unmatched = json.loads(proc.stderr.readline())
        assert unmatched["event"] == "replay.unmatched"
        assert unmatched["actual"] == "CWD /elsewhere" and unmatched["expected"] == "PASV"
        ftp.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def download_log(size: int, duration_ms: float, data_file: str | None = None) -> str:
    """A hand-written session: login, PASV, RETR f.bin of ``size`` bytes in ``duration_ms``."""
    start = {"pipe": 1, "command": "RETR", "path": "f.bin", "direction": "download"}
    lines = [
        LOGIN_LOG.split(line("command", verb="QUIT", arg=""))[0],
        line("command", verb="RETR", arg="f.bin"),
        line("transfer.start", **start),
        reply(150, "Opening data connection.", "RETR"),
        reply(226, "Transfer complete.", "RETR"),
    ]
    if data_file is not None:
        lines.append(line("transfer.data", pipe=1, file=data_file, bytes=size))
    end = {"bytes": size, "duration_ms": duration_ms, "outcome": 226, "server_end": "eof"}
    lines.append(line("transfer.end", **start, **end))
    return "".join(lines)


def fetch(address: tuple[str, int]) -> bytes:
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*address)
    ftp.login("alice", "x")
    chunks: list[bytes] = []
    ftp.retrbinary("RETR f.bin", chunks.append)
    ftp.close()
    return b"".join(chunks)


def test_recorded_timing_paces_transfers(tmp_path: Path, ftpdiag_replay: Replay) -> None:
    """A download recorded as taking 0.6 s: at once by default, about 0.6 s (or 0.3 s at
    speed 2) with recorded timing; the size is the recorded one either way."""
    log = tmp_path / "s.jsonl"
    log.write_text(download_log(300_000, 600))
    for options, low, high in (
        ({}, 0, 0.3),
        ({"timing": "recorded"}, 0.5, 1.5),
        ({"timing": "recorded", "speed": 2}, 0.25, 0.55),
    ):
        replay = ftpdiag_replay(log, **options)
        started = time.monotonic()
        assert len(fetch(replay.address)) == 300_000
        assert low <= time.monotonic() - started < high, options


def test_recorded_bytes_found_next_to_the_log(tmp_path: Path, ftpdiag_replay: Replay) -> None:
    """A log moved with its data file: the file is found beside the log and served whole."""
    payload = bytes(range(256)) * 100
    (tmp_path / "ab12-1.bin").write_bytes(payload)
    log = tmp_path / "s.jsonl"
    log.write_text(download_log(len(payload), 1, data_file="elsewhere/ab12-1.bin"))
    assert fetch(ftpdiag_replay(log).address) == payload


@pytest.mark.parametrize("kind", ["refused", "timeout"])
def test_data_connection_refused_or_never_accepted(
    tmp_path: Path, ftpdiag_replay: Replay, kind: str
) -> None:
    """A recorded server that refused the data connection advertises a port nothing listens
    on; one that never accepted it leaves the client's connection unanswered; then 425."""
    start = {"pipe": 1, "command": "RETR", "path": "f.bin", "direction": "download"}
    end = {"bytes": 0, "outcome": 425, "server_end": "never"}
    log = tmp_path / "s.jsonl"
    log.write_text(
        LOGIN_LOG.split(line("command", verb="QUIT", arg=""))[0]
        + line("data.failed", pipe=1, side="server", kind=kind, detail="")
        + line("command", verb="RETR", arg="f.bin")
        + line("transfer.start", **start)
        + reply(425, "Can't open data connection.", "RETR")
        + line("transfer.end", **start, **end)
    )
    replay = ftpdiag_replay(log)
    ftp = ftplib.FTP(timeout=1)
    ftp.connect(*replay.address)
    ftp.login("alice", "x")
    address = ftplib.parse227(ftp.sendcmd("PASV"))
    if kind == "refused":
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=1)
    else:
        with socket.create_connection(address, timeout=1) as data, pytest.raises(TimeoutError):
            data.recv(1)
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.sendcmd("RETR f.bin")
    ftp.close()


def test_console_lines() -> None:
    """The console shows where the replay listens and what it serves, and each unexpected
    command with what the recording expected."""
    from ftpdiag.console import ConsoleRenderer

    render = ConsoleRenderer(color=False)
    listen = {
        "event": "replay.listen",
        "listen": "127.0.0.1:40000",
        "input": "s.jsonl",
        "timing": "fast",
        "session": "ab12",
        "sessions": ["ab12", "cd34"],
        "greeting": 220,
        "commands": 4,
        "flexible": ["FEAT", "TYPE"],
        "transfers": ["RETR f.bin 5000 B eof"],
        "closes": True,
    }
    text = render(listen)
    assert "ftpdiag replay listening on 127.0.0.1:40000 (timing fast)" in text
    assert "greeting 220, 4 commands in order" in text and "FEAT TYPE" in text
    assert "transfer RETR f.bin 5000 B eof" in text and "--session): ab12 cd34" in text
    line = render({"event": "replay.unmatched", "actual": "CWD /x", "expected": "PASV"})
    assert "✗ unexpected CWD /x (recording expects PASV): 500" in line
