"""Failures captured with tcpdump on loopback give the same root cause as the live proxy.

Each scenario runs twice against a fresh fault-injecting pyftpdlib server: once through the
ftpdiag proxy (the live diagnosis), once with the client talking to the server directly
while tcpdump records the loopback interface (``host 127.0.0.1``, so the data connections
are in the capture too). ``ftpdiag analyze`` on the capture must name the same root cause.
"""

from __future__ import annotations

import contextlib
import ftplib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.analyze import analyze_records
from ftpdiag.capture import capture_sessions
from ftpdiag.testing import ProxyHandle
from tests.fake_servers import (
    AbortTransferAfter,
    FakeFTPServer,
    Fault,
    MalformedPasv,
    ResetDataAfter,
    make_file,
)

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0
USER, PASSWORD = "user", "secret"
BIG = 1 << 20
TCPDUMP = shutil.which("tcpdump")
# The direct runs use a loopback address of their own, so that the capture filter keeps
# this test's connections only (other processes talk on 127.0.0.1 meanwhile).
HOST = f"127.0.15.{os.getpid() % 250 + 2}"


def _require_tcpdump() -> str:
    """tcpdump, and the right to capture; missing is a skip, or a failure under CI."""
    problem = None
    if TCPDUMP is None:
        problem = "tcpdump is not installed (Debian package tcpdump; scripts/test.sh installs it)"
    elif os.geteuid() != 0:
        problem = "capturing on loopback needs root"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    assert TCPDUMP is not None
    return TCPDUMP


@contextlib.contextmanager
def tcpdump(path: Path) -> Iterator[dict[str, int]]:
    """Record loopback traffic of ``HOST`` into ``path`` while the block runs (as root:
    tcpdump would otherwise drop to its own user, who may not write into ``path``). The
    dict it yields gets ``dropped``, the packets the kernel could not hand to tcpdump."""
    binary = _require_tcpdump()
    stats = {"dropped": 0}
    proc = subprocess.Popen(
        [
            binary,
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            "-B",
            "8192",
            "-Z",
            "root",
            "-w",
            str(path),
            "host",
            HOST,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode(errors="replace")  # "listening on lo, ..."
        assert "listening" in line, f"tcpdump did not start: {line}"
        yield stats
        time.sleep(0.5)  # the last packets (FIN, ACK) reach the capture
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        found = re.search(rb"(\d+) packets? dropped by kernel", err or b"")
        stats["dropped"] = int(found.group(1)) if found else 0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def retr_with_size(host: str, port: int, name: str, size: bool = True) -> None:
    """Log in, ask SIZE (if ``size``), download ``name`` (errors are the scenario, not the
    test), QUIT."""
    ftp = ftplib.FTP(source_address=(host if host == HOST else "127.0.0.1", 0))
    ftp.connect(host, port, timeout=TIMEOUT)
    ftp.login(USER, PASSWORD)
    with contextlib.suppress(ftplib.Error, OSError, EOFError):
        ftp.sendcmd("TYPE I")
        if size:
            ftp.sendcmd(f"SIZE {name}")
        ftp.retrbinary(f"RETR {name}", lambda _: None)
    try:
        ftp.quit()
    except (ftplib.Error, OSError, EOFError):
        ftp.close()


def live_root_cause(proxy: ProxyHandle) -> str | None:
    deadline = time.monotonic() + TIMEOUT
    while not any(e["event"] == "session.summary" for e in list(proxy.events)):
        assert time.monotonic() < deadline, "the live session did not end"
        time.sleep(0.01)
    summary = next(e for e in proxy.events if e["event"] == "session.summary")
    return headline(summary)


def headline(summary: dict[str, Any]) -> str | None:
    """What a summary puts first: its root cause, else (nothing failed) its top warning."""
    if summary["root_cause"]:
        return str(summary["root_cause"]["rule"])
    return str(summary["diagnoses"][0]["rule"]) if summary["diagnoses"] else None


def capture_root_causes(path: Path) -> list[str | None]:
    records = [r for session in capture_sessions(str(path)) for r in session]
    out = analyze_records(records)
    return [headline(s) for s in out if s["event"] == "session.summary"]


def _pasv_to_closed_port() -> Fault:
    port = closed_port()
    host = HOST.replace(".", ",")
    return MalformedPasv(f"227 Entering Passive Mode ({host},{port >> 8},{port & 255}).")


Scenario = tuple[Callable[[], tuple[Fault, ...]], str, bool, str | None]
"""(faults of the server, file to download, ask SIZE first, root cause live and captured)."""
SCENARIOS: dict[str, Scenario] = {
    "426 mid-transfer (premature EOF)": (
        lambda: (AbortTransferAfter(100_000),),
        "big.bin",
        True,
        "transfer.aborted",
    ),
    "426 after a reset": (lambda: (ResetDataAfter(100_000),), "big.bin", True, "transfer.aborted"),
    "550 file not found": (lambda: (), "missing.bin", False, "file.not_found"),
    "PASV to an unreachable port": (
        lambda: (_pasv_to_closed_port(),),
        "big.bin",
        True,
        "pasv.unreachable",
    ),
    "healthy download": (lambda: (), "big.bin", True, None),
    # The server advertises another address than its own in 227; ftplib (like curl)
    # connects to the control connection's address instead, so the download works: no root
    # cause, and the NAT warning is the headline.
    "NAT address in PASV": (lambda: (), "big.bin", True, "pasv.nat_mismatch"),
}
SERVER_OPTIONS: dict[str, dict[str, Any]] = {
    "NAT address in PASV": {"masquerade_address": "127.0.0.2"},
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_capture_gives_the_live_root_cause(
    scenario: str, tmp_path: Path, ftpdiag_proxy: Callable[..., ProxyHandle]
) -> None:
    """The scenario's headline (root cause, else top warning) is the same live (through the
    proxy) and from a tcpdump capture of the same failure without the proxy."""
    _require_tcpdump()
    faults, name, size, expected = SCENARIOS[scenario]
    root = tmp_path / "root"
    root.mkdir()
    make_file(root, "big.bin", BIG, seed=1)
    servers: list[FakeFTPServer] = []

    def serve(host: str = "127.0.0.1") -> FakeFTPServer:
        options = SERVER_OPTIONS.get(scenario, {})
        server = FakeFTPServer(root, faults=faults(), host=host, **options).start()
        servers.append(server)
        return server

    try:
        proxy = ftpdiag_proxy(serve().address)
        retr_with_size(proxy.host, proxy.port, name, size)
        live = live_root_cause(proxy)
        assert live == expected, f"live: {live}"
        path = tmp_path / "failure.pcap"
        for _attempt in range(3):  # a loaded machine may drop packets: capture again
            direct = serve(HOST)
            with tcpdump(path) as stats:
                retr_with_size(*direct.address, name, size)
            if not stats["dropped"]:
                break
        assert not stats["dropped"], f"tcpdump lost {stats['dropped']} packets three times"
    finally:
        for server in servers:
            server.stop()
    sessions = capture_sessions(str(path))
    ours = [s for s in sessions if s[0]["upstream"] == "{}:{}".format(*direct.address)]
    assert len(ours) == 1, f"{len(sessions)} sessions in the capture"
    out = analyze_records(ours[0])
    (summary,) = [r for r in out if r["event"] == "session.summary"]
    assert headline(summary) == live
    if expected == "transfer.aborted":
        end: dict[str, Any] = next(r for r in ours[0] if r["event"] == "transfer.end")
        assert end["bytes"] >= 100_000 and end["outcome"] == 426
    if expected in (None, "pasv.nat_mismatch"):
        end = next(r for r in ours[0] if r["event"] == "transfer.end")
        assert (end["bytes"], end["missed_bytes"]) == (BIG, 0)
