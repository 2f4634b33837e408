"""End to end: ``ftpdiag proxy`` as a real subprocess, real pyftpdlib servers, Python's ftplib."""

from __future__ import annotations

import ftplib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_servers import FakeFTPServer, make_file

PASSWORD = "Secr3t-Pa55word"


class ProxyProcess:
    """A running ``python -m ftpdiag proxy``; its port is read from its own JSON log."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log = tmp_path / "session.jsonl"
        self.stderr_path = tmp_path / "stderr.txt"
        self.stderr = self.stderr_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "ftpdiag",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--log-file",
            str(self.log),
            "--log-format",
            "json",
            *args,
        ]
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)
        listen = self.wait_for("proxy.listen")
        host, port = listen["listen"].rsplit(":", 1)
        self.address = (host, int(port))

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_for(self, event: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if record["event"] == event and all(record.get(k) == v for k, v in match.items()):
                    return record
            if self.proc.poll() is not None and event != "session.close":
                break
            time.sleep(0.02)
        raise AssertionError(f"no {event} {match}; stderr: {self.stderr_path.read_text()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.stderr.close()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[FakeFTPServer]:
    root = tmp_path / "root"
    root.mkdir()
    make_file(root, "data.bin", 300_000, seed=3)
    with FakeFTPServer(root=root, user="alice", password=PASSWORD) as server:
        yield server


@pytest.fixture
def proxy(tmp_path: Path, upstream: FakeFTPServer) -> Iterator[ProxyProcess]:
    process = ProxyProcess(tmp_path, "--upstream", f"127.0.0.1:{upstream.address[1]}")
    yield process
    process.stop()


def test_control_session_is_logged_paired_and_redacted(proxy: ProxyProcess) -> None:
    """ftplib's PWD/CWD/MKD/NOOP/QUIT: every reply paired with its command, with latency,
    220 and 230 diagnosed, and the password nowhere in the log or on stderr."""
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    ftp.login("alice", PASSWORD)
    assert ftp.pwd() == "/"
    ftp.mkd("new")
    ftp.cwd("new")
    ftp.voidcmd("NOOP")
    ftp.quit()
    proxy.wait_for("session.summary")
    records = proxy.records()
    replies = [(r["command"], r["code"]) for r in records if r["event"] == "reply"]
    assert replies == [
        (None, 220),
        ("USER", 331),
        ("PASS", 230),
        ("PWD", 257),
        ("MKD", 257),
        ("CWD", 250),
        ("NOOP", 200),
        ("QUIT", 221),
    ]
    for record in records:
        assert record["timestamp"].endswith("Z") and record["level"] and record["event"]
        if record["event"] not in ("proxy.listen", "tls.ca"):
            assert len(record["session"]) == 4
        if record["event"] == "reply":
            assert isinstance(record["latency_ms"], float) and record["meaning"]
    rules = {(r["rule"], r["code"]) for r in records if r["event"] == "diagnosis"}
    assert {("greeting.ready", 220), ("login.ok", 230)} <= rules
    assert any(
        r["event"] == "command" and r["verb"] == "PASS" and r["arg"] == "****" for r in records
    )
    assert proxy.stop() == 0
    assert PASSWORD not in proxy.log.read_text() and PASSWORD not in proxy.stderr_path.read_text()


def test_transfer_through_the_subprocess_is_byte_exact(
    proxy: ProxyProcess, upstream: FakeFTPServer
) -> None:
    """A binary RETR through the CLI proxy yields the server's exact bytes."""
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    ftp.login("alice", PASSWORD)
    buf = io.BytesIO()
    ftp.retrbinary("RETR data.bin", buf.write)
    ftp.quit()
    assert buf.getvalue() == (upstream.root / "data.bin").read_bytes()


def test_sigterm_closes_open_sessions_and_exits_zero(proxy: ProxyProcess) -> None:
    """SIGTERM: each open session gets a 421 and its session.close event; exit status 0."""
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    ftp.login("alice", PASSWORD)
    assert proxy.stop() == 0
    close = proxy.wait_for("session.close")
    assert close["reason"] == "proxy shutdown"
    with pytest.raises((ftplib.error_temp, EOFError, OSError)):
        ftp.voidcmd("NOOP")


def test_upstream_refused_gives_421_and_a_remedy(tmp_path: Path) -> None:
    """A closed upstream port: the client gets a 421 with the cause; the log says how to fix it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    process = ProxyProcess(tmp_path, "--upstream", f"127.0.0.1:{closed_port}")
    try:
        with pytest.raises(
            ftplib.error_temp, match=r"421 ftpdiag: cannot reach the server .*refused"
        ):
            ftplib.FTP().connect(*process.address, timeout=10)
        diagnosis = process.wait_for("diagnosis", rule="upstream.refused")
        assert diagnosis["code"] == 421 and "listens" in diagnosis["remedy"]
        # The proxy keeps serving: a second client gets the same clean answer.
        with pytest.raises(ftplib.error_temp):
            ftplib.FTP().connect(*process.address, timeout=10)
    finally:
        assert process.stop() == 0


def test_default_sandbox_serves_files(tmp_path: Path) -> None:
    """Without --upstream the proxy fronts the built-in sandbox and says how to log in."""
    process = ProxyProcess(tmp_path)
    try:
        listen = process.wait_for("proxy.listen")
        assert listen["sandbox"] is True and listen["user"] == "diag"
        ftp = ftplib.FTP()
        ftp.connect(*process.address, timeout=10)
        ftp.login(listen["user"], listen["sandbox_password"])
        assert "big.bin" in ftp.nlst()
        ftp.voidcmd("TYPE I")
        assert ftp.size("big.bin") > 1_000_000
        buf = io.BytesIO()
        ftp.retrbinary("RETR big.bin", buf.write)
        assert len(buf.getvalue()) == ftp.size("big.bin")
        ftp.quit()
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["proxy", "--listen", "nonsense"], "missing :PORT"),
        (["proxy", "--listen", "127.0.0.1:99999"], "port must be"),
        (["proxy", "--upstream", "[::1"], "missing ']'"),
        (["proxy", "--allow-client", "not-a-net"], "CIDR"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(args: list[str], message: str) -> None:
    """Bad arguments: exit status 2, a single 'ftpdiag: error:' line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "ftpdiag", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ftpdiag: error:")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_listen_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    """Listening on a busy port fails with one line and status 2."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ftpdiag",
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                "127.0.0.1:1",
                "--log-format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ},
        )
    assert (
        result.returncode == 2
        and "cannot listen" in result.stderr
        and "Traceback" not in result.stderr
    )
