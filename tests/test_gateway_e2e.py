"""``--route-by-user`` end to end: real clients log in as ``user@host[:port]`` through the
proxy to a real pyftpdlib server; refusals are clean 530s, and a refused destination is never
dialled. Names resolve through an injected resolver (no DNS); only loopback is ever dialled."""

from __future__ import annotations

import ftplib
import hashlib
import io
import ipaddress
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet import defer, error

from ftpdiag.core.routing import UpstreamPolicy
from ftpdiag.proxy.upstream import UpstreamConnector
from ftpdiag.testing import ProxyHandle
from tests.interop.servers import unavailable

DATA = bytes(range(256)) * 4096


def _resolver(host: str) -> defer.Deferred[str]:
    names = {"ftp.example.test": "127.0.0.1", "far.example.test": "203.0.113.7"}
    if host in names:
        return defer.succeed(names[host])
    return defer.fail(error.DNSLookupError(host))


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the proxy dials; anything but loopback fails the test before any packet."""
    seen: list[tuple[str, int]] = []
    connect = UpstreamConnector._dial

    def guarded(self: UpstreamConnector, ip: str, port: int, build: Any) -> Any:
        seen.append((ip, port))
        assert ipaddress.ip_address(ip).is_loopback, f"the gateway dialled {ip}"
        return connect(self, ip, port, build)

    monkeypatch.setattr(UpstreamConnector, "_dial", guarded)
    return seen


@pytest.fixture
def gateway(
    tmp_path: Path,
    ftpdiag_sandbox: Callable[..., Any],
    ftpdiag_proxy: Callable[..., ProxyHandle],
    dialled: list[tuple[str, int]],
) -> tuple[ProxyHandle, Any]:
    server = ftpdiag_sandbox(root=tmp_path / "root", user="bob", password="pw")
    (server.root / "f.bin").write_bytes(DATA)
    proxy = ftpdiag_proxy(
        ("", 0), route_by_user=True, resolver=_resolver, allow_upstream=UpstreamPolicy()
    )
    return proxy, server


def test_ftplib_logs_in_through_the_gateway(gateway: tuple[ProxyHandle, Any]) -> None:
    """ftpdiag greets, ``USER bob@127.0.0.1:PORT`` routes, the download is byte-exact, and
    the server's greeting is logged (and diagnosed) but not relayed."""
    proxy, server = gateway
    ftp = ftplib.FTP()
    welcome = ftp.connect(*proxy.address, timeout=10)
    assert welcome.startswith("220 ftpdiag gateway ready")
    ftp.login(f"bob@{server.address[0]}:{server.address[1]}", "pw")
    got = io.BytesIO()
    ftp.retrbinary("RETR f.bin", got.write)
    ftp.quit()
    assert hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(DATA).digest()
    selected = proxy.wait_for("route.selected")
    assert (selected["user"], selected["port"]) == ("bob", server.address[1])
    summary = proxy.wait_for("session.summary")
    assert summary["root_cause"] is None
    assert [d["rule"] for d in proxy.diagnoses() if d.get("code") == 220] == ["greeting.ready"]
    assert "pw" not in str([e for e in proxy.events if e["event"] == "command"])


def test_names_resolve_through_the_injected_resolver(gateway: tuple[ProxyHandle, Any]) -> None:
    """``USER bob@ftp.example.test PORT`` (the space variant) resolves without DNS."""
    proxy, server = gateway
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    ftp.login(f"bob@ftp.example.test {server.address[1]}", "pw")
    assert ftp.nlst() == ["f.bin"]
    ftp.quit()


@pytest.mark.parametrize(
    ("login", "kind", "words"),
    [
        ("bob", "malformed", "user@host"),
        ("bob@far.example.test", "not allowed", "--allow-upstream 203.0.113.7"),
        ("bob@203.0.113.7:21", "not allowed", "--allow-upstream 203.0.113.7"),
        ("bob@nowhere.example.test", "dns", "cannot reach"),
    ],
)
def test_refusals_are_clean_530s_and_nothing_is_dialled(
    gateway: tuple[ProxyHandle, Any],
    dialled: list[tuple[str, int]],
    login: str,
    kind: str,
    words: str,
) -> None:
    """A malformed login, a destination the policy refuses, an unknown name: 530 with the
    reason, a ``route.refused`` fact, nothing dialled, and the client may log in again."""
    proxy, server = gateway
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    with pytest.raises(ftplib.error_perm, match=r"^530 ftpdiag gateway") as refused:
        ftp.login(login, "pw")
    assert words in str(refused.value)
    assert proxy.wait_for("route.refused")["kind"] == kind
    assert dialled == []
    ftp.login(f"bob@{server.address[0]}:{server.address[1]}", "pw")  # a second try works
    ftp.quit()
    assert dialled == [server.address]


def test_a_refused_connection_is_a_530_with_the_reason(
    gateway: tuple[ProxyHandle, Any], ftpdiag_sandbox: Callable[..., Any]
) -> None:
    """A server that refuses the connection: 530 naming it, then the client may retry."""
    proxy, _ = gateway
    closed = ftpdiag_sandbox()
    address = closed.address
    closed.stop()
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=10)
    with pytest.raises(ftplib.error_perm, match="connection refused"):
        ftp.login(f"bob@{address[0]}:{address[1]}", "pw")
    assert proxy.wait_for("upstream.failed")["kind"] == "refused"
    ftp.quit()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed: scripts/test.sh installs it (as root, on Debian)")
    return path


def test_curl_and_lftp_through_the_gateway(
    gateway: tuple[ProxyHandle, Any], tmp_path: Path
) -> None:
    """curl and lftp, told to log in as ``bob@host:port``, download the file byte-exactly
    (lftp's pre-login FEAT and OPTS are answered by the gateway itself)."""
    proxy, server = gateway
    login = f"bob@{server.address[0]}:{server.address[1]}"
    # In a URL the login is percent-encoded (curl's -u would split it at its first colon).
    url = f"ftp://{quote(login, safe='')}:pw@{proxy.host}:{proxy.port}/f.bin"
    done = subprocess.run(
        [_tool("curl"), "-sS", "--max-time", "20", url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == DATA
    script = (
        "set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no; "
        f"open -u '{login}',pw -p {proxy.port} {proxy.host}; get f.bin -o {tmp_path / 'f'}"
    )
    done = subprocess.run(
        [_tool("lftp"), "-c", script],
        capture_output=True,
        timeout=60,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f").read_bytes() == DATA


def test_the_command_serves_metrics_and_per_session_logs(
    tmp_path: Path, ftpdiag_sandbox: Callable[..., Any]
) -> None:
    """``ftpdiag proxy --route-by-user --metrics … --session-log-dir …``: a routed session is
    counted on the loopback metrics endpoint and gets its own 0600 log, named for its server."""
    import json
    import os
    import signal
    import stat
    import sys
    import time
    import urllib.request

    server = ftpdiag_sandbox(root=tmp_path / "root", user="bob", password="pw")
    log, sessions = tmp_path / "main.jsonl", tmp_path / "sessions"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ftpdiag",
            "proxy",
            "--route-by-user",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--session-log-dir",
            str(sessions),
            "--log-file",
            str(log),
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:

        def record(event: str) -> dict[str, Any]:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                lines = log.read_text().splitlines() if log.exists() else []
                found = [json.loads(x) for x in lines if f'"event":"{event}"' in x]
                if found:
                    return found[0]
                time.sleep(0.05)
            raise AssertionError(f"no {event}")

        host, _, port = record("proxy.listen")["listen"].rpartition(":")
        metrics_at = record("metrics.listen")["listen"]
        assert metrics_at.startswith("127.0.0.1:")
        ftp = ftplib.FTP()
        ftp.connect(host, int(port), timeout=10)
        ftp.login(f"bob@{server.address[0]}:{server.address[1]}", "pw")
        ftp.quit()
        record("session.summary")
        text = urllib.request.urlopen(f"http://{metrics_at}/metrics", timeout=10).read().decode()
        assert "ftpdiag_sessions_total 1.0" in text
        assert 'ftpdiag_commands_total{verb="USER"} 1.0' in text
        (only,) = sessions.iterdir()
        assert only.name.endswith(f"_to_127.0.0.1_{server.address[1]}.jsonl")
        assert stat.S_IMODE(only.stat().st_mode) == 0o600
        kept = only.read_text()
        assert "route.selected" in kept and '"verb":"PASS","arg":"****"' in kept
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
