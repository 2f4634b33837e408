"""End to end: one scenario per diagnosis rule, through the real proxy with a real client.

Each test starts a fault-injecting pyftpdlib server (tests/fake_servers), puts an ftpdiag
proxy in front of it (the ``ftpdiag_proxy`` fixture of the pytest plugin), drives a real
client (ftplib; curl where its behaviour differs), and asserts the rule, its code, its
evidence and that the user gets a title, an explanation and a remedy. The diagnoses of every
scenario are then compared with a stored baseline in ``tests/golden/<scenario>.json`` (volatile
values such as ports and latencies normalised away); ``FTPDIAG_UPDATE_GOLDEN=1`` rewrites the
baselines instead.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.handlers import DTPHandler, FTPHandler
from twisted.internet import defer, error

from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.testing import ProxyHandle, assert_diagnosed
from tests.fake_servers import (
    AbortTransferAfter,
    Delay,
    DropControlDuringTransfer,
    FakeFTPServer,
    Fault,
    GreetingDelay,
    GreetingReply,
    IdleTimeout,
    MalformedPasv,
    MultilineMismatch,
    NoCompletionReply,
    NoGreeting,
    Reply,
    ResetDataAfter,
    SlowData,
    Unsolicited,
    make_file,
    sha256_of,
)

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0
USER, PASSWORD = "user", "secret"
BIG = 1 << 20
SMALL = 1000
GOLDEN_DIR = Path(__file__).parent / "golden"
Serve = Callable[..., FakeFTPServer]
Proxy = Callable[..., ProxyHandle]


# ---- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The served directory: a 1 MiB binary, a small binary, an archive and a text file."""
    served = tmp_path / "root"
    served.mkdir()
    make_file(served, "big.bin", BIG, seed=1)
    make_file(served, "small.bin", SMALL, seed=2)
    make_file(served, "archive.zip", 5000, seed=3)
    (served / "notes.txt").write_bytes(b"line one\nline two\n")
    return served


@pytest.fixture
def serve(root: Path) -> Iterator[Serve]:
    """Factory of fake servers on ``root``; every server is stopped at the end."""
    servers: list[FakeFTPServer] = []

    def factory(*faults: Fault, **kwargs: Any) -> FakeFTPServer:
        server = FakeFTPServer(root, faults=faults, **kwargs).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def connect(proxy: ProxyHandle) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(proxy.host, proxy.port, timeout=TIMEOUT)
    return ftp


def login(proxy: ProxyHandle, user: str = USER, password: str = PASSWORD) -> ftplib.FTP:
    ftp = connect(proxy)
    ftp.login(user, password)
    return ftp


def bye(ftp: ftplib.FTP) -> None:
    """QUIT, or just close when the session is already gone."""
    try:
        ftp.quit()
    except (ftplib.Error, OSError, EOFError):
        ftp.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settle(proxy: ProxyHandle, sessions: int = 1, timeout: float = TIMEOUT) -> None:
    """Wait until ``sessions`` sessions have ended (their summaries logged)."""
    deadline = time.monotonic() + timeout
    while sum(e["event"] == "session.summary" for e in list(proxy.events)) < sessions:
        assert time.monotonic() < deadline, f"{sessions} session(s) did not end within {timeout} s"
        time.sleep(0.01)


def diagnosed(
    proxy: ProxyHandle, rule: str, code: int | None = None, **evidence: Any
) -> dict[str, Any]:
    """``assert_diagnosed`` plus: the user is told what happened and what to do."""
    found = assert_diagnosed(proxy, rule, code, **evidence)
    assert found["title"] and found["explanation"], found
    assert found["remedy"], found
    assert "unknown" not in found["title"], found["title"]
    return found


# ---- golden logs ---------------------------------------------------------------------------------
VOLATILE = frozenset(
    {"latency_ms", "elapsed_ms", "duration_ms", "rate_mbps", "idle_ms", "session", "timestamp"}
)
_ADDRESS_PORT = re.compile(r"\b((?:\d{1,3}\.){3}\d{1,3}):\d+\b")
_PASV_TUPLE = re.compile(r"\((\d+,\d+,\d+,\d+),\d+,\d+\)")
_MILLISECONDS = re.compile(r"\b\d+(?:\.\d+)? ms\b")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = _ADDRESS_PORT.sub(r"\1:<port>", value)
        value = _PASV_TUPLE.sub(r"(\1,<port>)", value)
        return _MILLISECONDS.sub("<n> ms", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def golden_view(events: Iterable[dict[str, Any]], volatile: Iterable[str] = ()) -> dict[str, Any]:
    """What a scenario's baseline holds: each diagnosis (rule, code, severity, title, evidence)
    and each session's root cause, with volatile values replaced by placeholders."""
    hidden = VOLATILE | set(volatile)
    diagnoses, roots = [], []
    for event in events:
        if event["event"] == "diagnosis":
            evidence = event["evidence"]
            title = str(event["title"])
            for key in sorted(hidden & set(evidence)):
                if evidence[key] is not None and key not in VOLATILE:
                    title = re.sub(
                        rf"(?<![\d.]){re.escape(str(evidence[key]))}(?![\d.])", f"<{key}>", title
                    )
            diagnoses.append(
                {
                    "rule": event["rule"],
                    "code": event["code"],
                    "severity": event["severity"],
                    "title": _scrub(title),
                    "evidence": {
                        k: "<volatile>" if k in hidden else _scrub(v)
                        for k, v in sorted(evidence.items())
                    },
                }
            )
        elif event["event"] == "session.summary":
            roots.append(event["root_cause"]["rule"] if event["root_cause"] else None)
    return {"diagnoses": diagnoses, "root_causes": roots}


def check_golden(name: str, proxy: ProxyHandle, volatile: Iterable[str] = ()) -> None:
    """Compare the scenario's diagnoses with ``tests/golden/<name>.json`` (or rewrite it)."""
    path = GOLDEN_DIR / f"{name}.json"
    actual = golden_view(proxy.events, volatile)
    if os.environ.get("FTPDIAG_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    assert path.exists(), f"no baseline {path}: run the tests once with FTPDIAG_UPDATE_GOLDEN=1"
    assert actual == json.loads(path.read_text(encoding="utf-8"))


# ---- misbehaving handlers the fault library does not provide -------------------------------------
class _StallAfter(DTPHandler):  # type: ignore[misc]
    """RETR sends 200000 bytes, then nothing more and keeps the connection open."""

    def send(self, data: bytes) -> int:
        left = 200_000 - self.tot_bytes_sent
        if self.file_obj is None or left > 0:
            return int(super().send(data[:left] if self.file_obj is not None else data))
        self.del_channel()
        return 0


class StallingHandler(FTPHandler):  # type: ignore[misc]
    dtp_handler = _StallAfter
    use_sendfile = False


class _GiveUpAfter(_StallAfter):
    """After 200000 bytes of RETR the server sends vsftpd's data timeout (421) and hangs up."""

    def send(self, data: bytes) -> int:
        sent = super().send(data)
        if sent == 0 and not getattr(self, "_gave_up", False):
            self._gave_up = True

            def give_up() -> None:
                self.cmd_channel.respond("421 Data timeout. Reconnect. Sorry.")
                self.cmd_channel.close_when_done()

            self.call_later(0.05, give_up)
        return sent


class GivingUpHandler(FTPHandler):  # type: ignore[misc]
    dtp_handler = _GiveUpAfter
    use_sendfile = False


class InnerCodeHelpHandler(FTPHandler):  # type: ignore[misc]
    """HELP answers a well-terminated multi-line 214 with an inner line that starts '211 '."""

    def ftp_HELP(self, line: str) -> None:
        self.push("214-The following commands are recognized:\r\n")
        self.push("211 USER PASS RETR STOR (this line looks like the end of a reply)\r\n")
        self.respond("214 Help OK.")


# ---- greeting ------------------------------------------------------------------------------------
def test_greeting_ready(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A plain 220 greeting and a login are diagnosed as info with nothing to fix."""
    proxy = ftpdiag_proxy(serve().address)
    bye(login(proxy))
    settle(proxy)
    ready = diagnosed(proxy, "greeting.ready", 220, text="ftpdiag fake FTP server ready.")
    assert ready["severity"] == "info" and ready["remedy"] == "Nothing to fix."
    diagnosed(proxy, "login.ok", 230, command="PASS")
    assert proxy.events[-1]["root_cause"] is None
    check_golden("greeting_ready", proxy)


def test_greeting_delayed(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """120 then 220 half a second later: the wait and the delay (how long) are diagnosed."""
    proxy = ftpdiag_proxy(serve(GreetingDelay(0.5)).address)
    ftp = connect(proxy)  # ftplib takes the 120 as the welcome...
    assert ftp.welcome is not None and ftp.welcome.startswith("120")
    assert ftp.getresp().startswith("220")  # ...so the 220 is read by hand
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "greeting.wait", 120)
    delayed = diagnosed(proxy, "greeting.delayed", 220)
    assert 450 <= delayed["evidence"]["latency_ms"] < 3000
    assert f"{delayed['evidence']['latency_ms']} ms" in delayed["title"]
    assert proxy.events[-1]["diagnoses"][0]["rule"] == "greeting.delayed"
    assert proxy.events[-1]["root_cause"] is None  # slow to greet, but nothing failed
    check_golden("greeting_delayed", proxy)


def test_greeting_refused(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """421 instead of the greeting is a refused session."""
    proxy = ftpdiag_proxy(
        serve(GreetingReply(421, "Service not available, closing control connection.")).address
    )
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(proxy)
    settle(proxy)
    diagnosed(
        proxy, "greeting.refused", 421, text="Service not available, closing control connection."
    )
    check_golden("greeting_refused", proxy)


def test_greeting_too_many(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """'421 Too many connections' at the greeting names the connection limit."""
    proxy = ftpdiag_proxy(
        serve(GreetingReply(421, "Too many connections (8) from this IP")).address
    )
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(proxy)
    settle(proxy)
    found = diagnosed(proxy, "greeting.too_many", 421)
    assert "max_per_ip" in found["remedy"]
    check_golden("greeting_too_many", proxy)


def test_greeting_max_cons_per_ip(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """pyftpdlib's real per-IP limit: the second session gets 421 at its greeting."""
    proxy = ftpdiag_proxy(serve(max_cons_per_ip=1).address)
    first = login(proxy)
    with pytest.raises(ftplib.error_temp, match=r"Too many connections from the same IP"):
        connect(proxy)
    settle(proxy, 1)
    bye(first)
    settle(proxy, 2)
    diagnosed(
        proxy, "greeting.too_many", 421, text="Too many connections from the same IP address."
    )
    check_golden("greeting_max_cons_per_ip", proxy)


def test_greeting_missing(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A server that accepts and never speaks: the proxy answers 421 after greeting_timeout."""
    proxy = ftpdiag_proxy(serve(NoGreeting()).address, greeting_timeout=0.5)
    with pytest.raises(ftplib.error_temp, match=r"no greeting within 0.5 s"):
        connect(proxy)
    settle(proxy)
    found = diagnosed(proxy, "greeting.missing", None, seconds=0.5)
    assert "implicit FTPS" in found["explanation"]
    check_golden("greeting_missing", proxy)


# ---- login ---------------------------------------------------------------------------------------
def test_login_wrong_password(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """530 after PASS for a named user is a failed login for that user."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = connect(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.login(USER, "wrong")
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "login.failed", 530, user=USER, command="PASS")
    assert USER in found["title"]
    check_golden("login_failed", proxy)


def test_login_anonymous_disabled(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """530 to an anonymous login is told apart from a wrong password."""
    proxy = ftpdiag_proxy(serve(anonymous=False).address)
    ftp = connect(proxy)
    with pytest.raises(ftplib.error_perm, match=r"Anonymous access not allowed"):
        ftp.login()
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "login.anonymous_refused", 530, user="anonymous")
    assert not proxy.diagnoses("login.failed")
    check_golden("login_anonymous_refused", proxy)


def test_login_tls_required(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """vsftpd's '530 Non-anonymous sessions must use encryption.' means FTPS is required."""
    proxy = ftpdiag_proxy(
        serve(Reply("USER", 530, "Non-anonymous sessions must use encryption.")).address
    )
    ftp = connect(proxy)
    with pytest.raises(ftplib.error_perm, match=r"encryption"):
        ftp.login(USER, PASSWORD)
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "tls.required", 530, command="USER")
    assert "AUTH TLS" in found["explanation"]
    assert not proxy.diagnoses("login.failed")
    check_golden("tls_required", proxy)


def test_login_too_many(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """ProFTPD's per-host limit comes as 530 to USER: too many connections, not bad credentials."""
    text = "Sorry, the maximum number of clients (2) from your host are already connected."
    proxy = ftpdiag_proxy(serve(Reply("USER", 530, text)).address)
    ftp = connect(proxy)
    with pytest.raises(ftplib.error_perm, match=r"maximum number of clients"):
        ftp.login(USER, PASSWORD)
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "login.too_many", 530, text=text)
    check_golden("login_too_many", proxy)


# ---- passive mode --------------------------------------------------------------------------------
def test_pasv_nat_mismatch(serve: Serve, root: Path, ftpdiag_proxy: Proxy, tmp_path: Path) -> None:
    """227 advertising 127.0.0.2 (masquerade) is a NAT mismatch; the proxy still transfers."""
    proxy = ftpdiag_proxy(serve(masquerade_address="127.0.0.2").address)
    ftp = login(proxy)
    out = tmp_path / "small.bin"
    with out.open("wb") as fh:
        ftp.retrbinary("RETR small.bin", fh.write)
    bye(ftp)
    settle(proxy)
    assert sha256_of(out) == sha256_of(root / "small.bin")
    found = diagnosed(proxy, "pasv.nat_mismatch", 227, control_peer="127.0.0.1")
    assert found["evidence"]["advertised"].startswith("127.0.0.2:")
    assert found["evidence"]["dialled"].startswith("127.0.0.1:")
    check_golden("pasv_nat_mismatch", proxy)


def test_pasv_unreachable(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A 227 naming a port nothing listens on: the proxy's dial is refused."""
    port = closed_port()
    pasv = MalformedPasv(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).")
    proxy = ftpdiag_proxy(serve(pasv).address)
    ftp = login(proxy)
    with pytest.raises((ftplib.error_temp, OSError)):
        ftp.retrbinary("RETR small.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    found = diagnosed(
        proxy, "pasv.unreachable", 425, side="server", kind="refused", server_mode="passive"
    )
    assert "passive port range" in found["explanation"]
    assert proxy.events[-1]["root_cause"]["rule"] == "pasv.unreachable"
    check_golden("pasv_unreachable", proxy)


@pytest.mark.parametrize("code", [500, 502])
def test_epsv_refused_then_pasv(
    serve: Serve, root: Path, ftpdiag_proxy: Proxy, tmp_path: Path, code: int
) -> None:
    """curl tries EPSV first; refused with 500/502 it falls back to PASV and the download works."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    proxy = ftpdiag_proxy(serve(Reply("EPSV", code, "EPSV not understood.")).address)
    out = tmp_path / "small.bin"
    subprocess.run(
        [
            curl,
            "-sS",
            "--max-time",
            "10",
            "-o",
            str(out),
            f"ftp://{USER}:{PASSWORD}@{proxy.host}:{proxy.port}/small.bin",
        ],
        check=True,
        timeout=15,
    )
    settle(proxy)
    assert sha256_of(out) == sha256_of(root / "small.bin")
    found = diagnosed(proxy, "epsv.refused", code, command="EPSV")
    assert "PASV" in found["title"] and "--disable-epsv" in found["explanation"]
    assert found["severity"] == "info" and proxy.events[-1]["root_cause"] is None
    assert [
        e["verb"] for e in proxy.events if e["event"] == "command" and e["verb"] in ("EPSV", "PASV")
    ] == ["EPSV", "PASV"]
    check_golden(f"epsv_refused_{code}", proxy)


def test_data_client_never_connected(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The client asks for PASV and never connects: the proxy's listener times out."""
    proxy = ftpdiag_proxy(serve().address, data=DataTimeouts(connect=0.5))
    ftp = login(proxy)
    ftp.sendcmd("PASV")
    proxy.wait_for("diagnosis", rule="data.client_never_connected", timeout=TIMEOUT)
    bye(ftp)
    settle(proxy)
    diagnosed(
        proxy,
        "data.client_never_connected",
        425,
        side="client",
        kind="timeout",
        client_mode="passive",
    )
    check_golden("data_client_never_connected", proxy)


def test_data_cannot_open_passive(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """425 to RETR in passive mode gets the catalog's passive-mode explanation."""
    proxy = ftpdiag_proxy(serve(Reply("RETR", 425, "Can't open data connection.")).address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.retrbinary("RETR small.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "data.cannot_open_passive", 425, command="RETR")
    assert "passive" in found["title"].lower()
    check_golden("data_cannot_open_passive", proxy)


# ---- active mode ---------------------------------------------------------------------------------
def test_active_425(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """425 to RETR after PORT is diagnosed in active-mode terms."""
    proxy = ftpdiag_proxy(serve(Reply("RETR", 425, "Can't open data connection.")).address)
    ftp = login(proxy)
    ftp.set_pasv(False)
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.retrbinary("RETR small.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "data.cannot_open_active", 425, command="RETR")
    assert "passive mode" in found["remedy"].lower()
    check_golden("data_cannot_open_active", proxy)


def test_active_port_refused(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server answers PORT with 501: active mode refused by the server."""
    proxy = ftpdiag_proxy(
        serve(Reply("PORT", 501, "Rejected data connection to foreign address.")).address
    )
    ftp = login(proxy)
    ftp.set_pasv(False)
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        ftp.retrbinary("RETR small.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "active.port_refused", 501, command="PORT")
    check_golden("active_port_refused", proxy)


def test_eprt_refused_then_port(
    serve: Serve, root: Path, ftpdiag_proxy: Proxy, tmp_path: Path
) -> None:
    """curl -P tries EPRT first; refused with 500 it falls back to PORT and the download works."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    proxy = ftpdiag_proxy(serve(Reply("EPRT", 500, "EPRT not understood.")).address)
    out = tmp_path / "small.bin"
    subprocess.run(
        [
            curl,
            "-sS",
            "--max-time",
            "10",
            "-P",
            "127.0.0.1",
            "-o",
            str(out),
            f"ftp://{USER}:{PASSWORD}@{proxy.host}:{proxy.port}/small.bin",
        ],
        check=True,
        timeout=15,
    )
    settle(proxy)
    assert sha256_of(out) == sha256_of(root / "small.bin")
    diagnosed(proxy, "eprt.refused", 500, command="EPRT")
    check_golden("eprt_refused", proxy)


def test_security_bounce(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """PORT naming another host is refused by the proxy itself (500), never sent to the server."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^500 Illegal PORT"):
        ftp.sendcmd("PORT 127,0,0,2,4,1")
    bye(ftp)
    settle(proxy)
    diagnosed(
        proxy, "security.bounce", 500, verb="PORT", requested="127.0.0.2:1025", client="127.0.0.1"
    )
    assert not [e for e in proxy.events if e["event"] == "reply" and e.get("command") == "PORT"]
    check_golden("security_bounce", proxy)


def test_malformed_port(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A PORT argument that is not an address is answered 501 by the proxy."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        ftp.sendcmd("PORT 1,2,3")
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "protocol.malformed_port", 501, verb="PORT", arg="1,2,3")
    check_golden("protocol_malformed_port", proxy)


def test_active_client_unreachable(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """PORT to a closed port of the client: the proxy cannot connect to it, closes the server's
    end, and the (slow, so still sending) server answers 426: the cause comes first."""
    proxy = ftpdiag_proxy(serve(SlowData(100_000)).address)
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    port = closed_port()
    ftp.sendcmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}")
    ftp.sendcmd("RETR big.bin")  # 1xx: the server goes on, the client's end fails
    proxy.wait_for("diagnosis", rule="transfer.aborted", timeout=TIMEOUT)
    bye(ftp)
    settle(proxy)
    diagnosed(
        proxy, "active.client_unreachable", 425, side="client", kind="refused", client_mode="active"
    )
    diagnosed(proxy, "transfer.aborted", 426, cause="client_never_connected", client_end="never")
    assert proxy.events[-1]["root_cause"]["rule"] == "active.client_unreachable"
    check_golden("active_client_unreachable", proxy)


def test_active_server_never_connected(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """Upstream in active mode, the server says 150 but never connects back to the proxy."""
    faults = (
        Reply("PORT", 200, "PORT command successful."),
        Reply("RETR", 150, "Opening BINARY mode data connection."),
    )
    proxy = ftpdiag_proxy(
        serve(*faults).address, upstream_mode="active", data=DataTimeouts(connect=0.5)
    )
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR small.bin")
    proxy.wait_for("diagnosis", rule="active.server_never_connected", timeout=TIMEOUT)
    conn.close()
    ftp.close()
    settle(proxy)
    diagnosed(
        proxy,
        "active.server_never_connected",
        425,
        side="server",
        kind="timeout",
        server_mode="active",
    )
    assert not proxy.diagnoses("protocol.unexpected_reply")  # PASV was sent upstream as PORT
    check_golden("active_server_never_connected", proxy)


def test_security_data_theft(serve: Serve, root: Path, ftpdiag_proxy: Proxy) -> None:
    """A connection to the client's data port from another host is refused; the real one works."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    with socket.socket() as thief:
        thief.settimeout(TIMEOUT)
        thief.bind(("127.0.0.2", 0))
        thief.connect((host, port))
        assert thief.recv(16) == b""  # closed at once
    proxy.wait_for("diagnosis", rule="security.data_theft", timeout=TIMEOUT)
    with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
        ftp.sendcmd("RETR small.bin")
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert ftp.voidresp().startswith("226") and len(received) == SMALL
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "security.data_theft", None, side="client", expected="127.0.0.1")
    assert found["evidence"]["peer"].startswith("127.0.0.2:")
    check_golden("security_data_theft", proxy)


# ---- transfers -----------------------------------------------------------------------------------
def _retr_with_size(
    proxy: ProxyHandle, name: str = "big.bin"
) -> tuple[ftplib.FTP, BaseException | None]:
    """Log in, TYPE I, SIZE (so the engine knows the expected bytes), RETR; return the error."""
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    ftp.size(name)
    try:
        ftp.retrbinary(f"RETR {name}", lambda _: None)
    except (ftplib.Error, OSError) as exc:
        return ftp, exc
    return ftp, None


def test_426_client_abor(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The client sends ABOR mid-download: the 426 is the client's own stop, an info note with
    bytes and percentage, and no root cause."""
    proxy = ftpdiag_proxy(serve(SlowData(200_000)).address)
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    ftp.size("big.bin")
    conn = ftp.transfercmd("RETR big.bin")
    conn.recv(10_000)
    assert ftp.abort().startswith("426")
    conn.close()
    assert ftp.getresp().startswith("226")  # pyftpdlib: 426 for RETR, then 226 for ABOR
    bye(ftp)
    settle(proxy)
    found = diagnosed(
        proxy,
        "transfer.client_stopped",
        426,
        cause="client_abort",
        aborted_by="client",
        expected=BIG,
    )
    assert 0 < found["evidence"]["bytes"] < BIG and 0 < found["evidence"]["percent"] < 100
    assert "ABOR" in found["explanation"] and found["severity"] == "info"
    assert not proxy.diagnoses("reply.explained")  # the 426 is explained once
    assert not proxy.diagnoses("transfer.aborted")
    assert proxy.events[-1]["root_cause"] is None and proxy.events[-1]["cancelled"] == 1
    # How each end of the data connection finished after ABOR depends on who closes first.
    volatile = ("bytes", "percent", "resume_at", "client_end", "server_end")
    check_golden("transfer_aborted_client_abor", proxy, volatile=volatile)


def test_426_premature_eof(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server closes the data connection after 100000 of 1 MiB and answers 426."""
    proxy = ftpdiag_proxy(serve(AbortTransferAfter(100_000)).address)
    ftp, exc = _retr_with_size(proxy)
    assert isinstance(exc, ftplib.error_temp) and str(exc).startswith("426")
    bye(ftp)
    settle(proxy)
    found = diagnosed(
        proxy,
        "transfer.aborted",
        426,
        cause="premature_eof",
        bytes=100_000,
        expected=BIG,
        percent=9.5,
        server_end="eof",
        resume_at=100_000,
    )
    assert "REST 100000" in found["remedy"]
    assert "100000 bytes of 1048576 (9.5 %)" in found["title"]
    check_golden("transfer_aborted_premature_eof", proxy)


def test_426_server_side_without_size(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """Without SIZE the same abort is attributed to the server side, with no percentage."""
    proxy = ftpdiag_proxy(serve(AbortTransferAfter(100_000)).address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        ftp.retrbinary("RETR big.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    found = diagnosed(
        proxy,
        "transfer.aborted",
        426,
        cause="server_closed",
        bytes=100_000,
        expected=None,
        percent=None,
    )
    assert found["title"].endswith("after 100000 bytes")
    check_golden("transfer_aborted_server_side", proxy)


def test_426_reset(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server resets (RST) the data connection after 100000 bytes and answers 426."""
    proxy = ftpdiag_proxy(serve(ResetDataAfter(100_000)).address)
    ftp, exc = _retr_with_size(proxy)
    assert exc is not None  # ftplib sees the reset (or the 426)
    bye(ftp)
    settle(proxy)
    found = diagnosed(
        proxy,
        "transfer.aborted",
        426,
        cause="server_reset",
        server_end="reset",
        bytes=100_000,
        expected=BIG,
    )
    assert "RST" in found["explanation"]
    check_golden("transfer_aborted_reset", proxy)


def test_transfer_truncated(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """226 after fewer bytes than SIZE announced is a truncated transfer."""
    proxy = ftpdiag_proxy(serve(Reply("SIZE", 213, str(SMALL + 500))).address)
    ftp, exc = _retr_with_size(proxy, "small.bin")
    assert exc is None
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "transfer.truncated", 226, bytes=SMALL, expected=SMALL + 500, percent=66.7)
    check_golden("transfer_truncated", proxy)


def test_transfer_no_completion(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """All data passes but no 226 comes: diagnosed after completion_timeout."""
    proxy = ftpdiag_proxy(serve(NoCompletionReply()).address, completion_timeout=0.5)
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd("RETR small.bin") as conn:
        while conn.recv(65536):
            pass
    proxy.wait_for("diagnosis", rule="transfer.no_completion", timeout=TIMEOUT)
    ftp.close()
    settle(proxy)
    diagnosed(
        proxy,
        "transfer.no_completion",
        None,
        command="RETR",
        path="small.bin",
        bytes=SMALL,
        waited_s=0.5,
    )
    assert not proxy.diagnoses("transfer.interrupted")  # the same story, told once
    check_golden("transfer_no_completion", proxy)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (451, "Requested action aborted: local error in processing."),
        (452, "Insufficient storage space."),
        (552, "Exceeded storage allocation."),
    ],
)
def test_transfer_storage(serve: Serve, ftpdiag_proxy: Proxy, code: int, text: str) -> None:
    """451/452/552 to STOR: the upload was refused for storage reasons (catalog prose)."""
    proxy = ftpdiag_proxy(serve(Reply("STOR", code, text)).address)
    ftp = login(proxy)
    with pytest.raises(ftplib.Error, match=rf"^{code}"):
        ftp.storbinary("STOR upload.bin", io.BytesIO(b"x" * 1000))
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "transfer.storage", code, command="STOR", path="upload.bin", text=text)
    check_golden(f"transfer_storage_{code}", proxy)


def test_file_permission_550(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """pyftpdlib's '550 Not enough privileges.' to an anonymous STOR is a permission problem."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy, "anonymous", "guest@example.com")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.storbinary("STOR upload.bin", io.BytesIO(b"x" * 100))
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "file.permission", 550, command="STOR", path="upload.bin")
    assert not proxy.diagnoses("protocol.unexpected_reply")  # 550 to STOR is de facto standard
    check_golden("file_permission_550", proxy)


def test_file_permission_553(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """553 'Permission denied.' to STOR is a permission problem."""
    proxy = ftpdiag_proxy(serve(Reply("STOR", 553, "Permission denied.")).address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^553"):
        ftp.storbinary("STOR upload.bin", io.BytesIO(b"x" * 100))
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "file.permission", 553, command="STOR", path="upload.bin")
    check_golden("file_permission_553", proxy)


def test_file_not_found(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """550 'No such file or directory.' to RETR is a missing file, not a permission problem."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.retrbinary("RETR missing.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "file.not_found", 550, command="RETR", path="missing.bin")
    assert not proxy.diagnoses("file.permission")
    check_golden("file_not_found", proxy)


def test_transfer_ascii_binary(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """RETR of archive.zip in TYPE A (ftplib's retrlines) warns about ASCII mode."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    ftp.encoding = "latin-1"
    ftp.retrlines("RETR archive.zip", lambda _: None)
    ftp.retrlines("RETR notes.txt", lambda _: None)  # text in ASCII mode is fine
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "transfer.ascii_binary", None, path="archive.zip", command="RETR")
    assert len(proxy.diagnoses("transfer.ascii_binary")) == 1
    check_golden("transfer_ascii_binary", proxy)


def test_control_idle_timeout(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server's idle timeout (421, no command pending) is not an unsolicited reply."""
    proxy = ftpdiag_proxy(serve(IdleTimeout(0.5)).address)
    ftp = login(proxy)
    settle(proxy)
    ftp.close()
    diagnosed(proxy, "control.idle_timeout", 421, text="Control connection timed out.")
    assert not proxy.diagnoses("protocol.unsolicited")
    check_golden("control_idle_timeout", proxy)


def test_control_dropped_during_transfer(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server closes the control connection in the middle of RETR."""
    proxy = ftpdiag_proxy(serve(DropControlDuringTransfer(100_000)).address)
    ftp, exc = _retr_with_size(proxy)
    assert exc is not None
    ftp.close()
    settle(proxy)
    diagnosed(proxy, "control.dropped_during_transfer", None, awaiting="RETR", transfer_open=True)
    assert proxy.events[-1]["root_cause"]["rule"] == "control.dropped_during_transfer"
    check_golden("control_dropped_during_transfer", proxy)


def test_transfer_server_gave_up(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """vsftpd-style '421 Data timeout' while the download is open: the server gave up."""
    proxy = ftpdiag_proxy(serve(handler_base=GivingUpHandler).address)
    ftp, exc = _retr_with_size(proxy)
    assert exc is not None
    ftp.close()
    settle(proxy)
    diagnosed(
        proxy,
        "transfer.server_gave_up",
        421,
        text="Data timeout. Reconnect. Sorry.",
        command="RETR",
    )
    assert not proxy.diagnoses("control.idle_timeout")
    check_golden("transfer_server_gave_up", proxy)


def test_transfer_interrupted(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The client hangs up in the middle of a (slow) download: interrupted after N bytes."""
    proxy = ftpdiag_proxy(serve(SlowData(200_000)).address, data=DataTimeouts(progress=0.1))
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    ftp.size("big.bin")
    conn = ftp.transfercmd("RETR big.bin")
    conn.recv(1000)
    proxy.wait_for("transfer.progress", timeout=TIMEOUT)
    ftp.close()
    conn.close()
    settle(proxy)
    found = diagnosed(proxy, "transfer.interrupted", None, outcome="closed", expected=BIG)
    assert 0 < found["evidence"]["bytes"] < BIG
    # The ends' states at session close depend on whether the pipe reported before it.
    volatile = ("bytes", "percent", "resume_at", "client_end", "server_end")
    check_golden("transfer_interrupted", proxy, volatile=volatile)


def test_transfer_stalled(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The server stops sending after 200000 bytes without closing: two equal progress reports."""
    proxy = ftpdiag_proxy(
        serve(handler_base=StallingHandler).address, data=DataTimeouts(progress=0.1)
    )
    ftp = login(proxy)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    proxy.wait_for("diagnosis", rule="transfer.stalled", timeout=TIMEOUT)
    conn.close()
    ftp.close()
    settle(proxy)
    diagnosed(proxy, "transfer.stalled", None, command="RETR", path="big.bin", bytes=200_000)
    assert len(proxy.diagnoses("transfer.stalled")) == 1
    check_golden("transfer_stalled", proxy)


# ---- protocol ------------------------------------------------------------------------------------
def test_protocol_unexpected_reply(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """200 to CWD is outside RFC 959 §5.4's list (250, 500, 501, 502, 421, 530, 550)."""
    proxy = ftpdiag_proxy(serve(Reply("CWD", 200, "Directory changed.")).address)
    ftp = login(proxy)
    ftp.cwd("/")
    bye(ftp)
    settle(proxy)
    diagnosed(
        proxy,
        "protocol.unexpected_reply",
        200,
        command="CWD",
        allowed=[250, 421, 500, 501, 502, 530, 550],
    )
    check_golden("protocol_unexpected_reply", proxy)


def test_protocol_unsolicited(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """An extra '200 Surprise' after the reply to NOOP answers no command."""
    proxy = ftpdiag_proxy(serve(Unsolicited("200 Surprise", "NOOP")).address)
    ftp = login(proxy)
    ftp.voidcmd("NOOP")
    proxy.wait_for("diagnosis", rule="protocol.unsolicited", timeout=TIMEOUT)
    ftp.close()
    settle(proxy)
    diagnosed(proxy, "protocol.unsolicited", 200, text="Surprise", command=None)
    check_golden("protocol_unsolicited", proxy)


def test_protocol_malformed_pasv(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """'227 Entering Passive Mode (garbage)' carries no address."""
    proxy = ftpdiag_proxy(serve(MalformedPasv()).address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_proto):
        ftp.retrbinary("RETR small.bin", lambda _: None)
    bye(ftp)
    settle(proxy)
    diagnosed(
        proxy, "protocol.malformed_pasv", 227, side="server", text="Entering Passive Mode (garbage)"
    )
    check_golden("protocol_malformed_pasv", proxy)


def test_protocol_multiline_mismatch(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A multi-line 214 with an inner '211 ' line: RFC-correct, but some clients split it there."""
    proxy = ftpdiag_proxy(serve(handler_base=InnerCodeHelpHandler).address)
    ftp = login(proxy)
    assert ftp.sendcmd("HELP").endswith("214 Help OK.")
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "protocol.multiline_mismatch", 214, command="HELP", inner=[211])
    check_golden("protocol_multiline_mismatch", proxy)


def test_protocol_multiline_never_ends(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """The MultilineMismatch fault's reply never ends (214- … 211 …): past max_reply_bytes the
    proxy closes the session and says so."""
    proxy = ftpdiag_proxy(serve(MultilineMismatch()).address, max_reply_bytes=100)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_temp, match=r"never ended"):
        ftp.sendcmd("HELP")
    ftp.close()
    settle(proxy)
    found = diagnosed(proxy, "protocol.reply_too_long", None, limit=100)
    assert found["evidence"]["code"] == 214
    check_golden("protocol_reply_too_long", proxy)


def test_protocol_malformed_reply(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A server line without a reply code is relayed and diagnosed."""
    proxy = ftpdiag_proxy(serve(Unsolicited("this is not a reply", "NOOP")).address)
    ftp = login(proxy)
    ftp.voidcmd("NOOP")
    proxy.wait_for("diagnosis", rule="protocol.malformed_reply", timeout=TIMEOUT)
    ftp.close()
    settle(proxy)
    diagnosed(proxy, "protocol.malformed_reply", None, text="this is not a reply")
    check_golden("protocol_malformed_reply", proxy)


def test_protocol_line_too_long(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A 9000-byte command line is discarded by the proxy with 500; the session goes on."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"too long"):
        ftp.sendcmd("NOOP " + "x" * 9000)
    ftp.voidcmd("NOOP")
    bye(ftp)
    settle(proxy)
    diagnosed(proxy, "protocol.line_too_long", None, side="client", limit=8192)
    check_golden("protocol_line_too_long", proxy)


def test_reply_explained(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """A 5xx no rule claims gets the catalog's explanation, with the catalog's severity."""
    proxy = ftpdiag_proxy(serve().address)
    ftp = login(proxy)
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.sendcmd("XYZZ")
    bye(ftp)
    settle(proxy)
    found = diagnosed(proxy, "reply.explained", 500, command="XYZZ")
    assert found["severity"] == "error"
    check_golden("reply_explained", proxy)


# ---- performance ---------------------------------------------------------------------------------
def test_performance_slow_reply(serve: Serve, ftpdiag_proxy: Proxy) -> None:
    """PASS answered after 2.1 s (over the 2000 ms threshold) is a slow reply."""
    proxy = ftpdiag_proxy(serve(Delay("PASS", 2.1)).address)
    bye(login(proxy))
    settle(proxy)
    found = diagnosed(proxy, "performance.slow_reply", None, command="PASS", threshold_ms=2000.0)
    assert found["evidence"]["latency_ms"] >= 2000
    assert "reverse" in found["remedy"]
    check_golden("performance_slow_reply", proxy)


# ---- upstream ------------------------------------------------------------------------------------
def test_upstream_refused(ftpdiag_proxy: Proxy) -> None:
    """Nothing listens on the upstream port: the client gets 421 and the reason."""
    port = closed_port()
    proxy = ftpdiag_proxy(("127.0.0.1", port))
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(proxy)
    settle(proxy)
    diagnosed(proxy, "upstream.refused", 421, kind="refused", upstream=f"127.0.0.1:{port}")
    check_golden("upstream_refused", proxy)


def test_upstream_dns(ftpdiag_proxy: Proxy) -> None:
    """The upstream name does not resolve (injected resolver: no real DNS lookup)."""

    def no_such_host(host: str) -> defer.Deferred[str]:
        return defer.fail(error.DNSLookupError(host))

    proxy = ftpdiag_proxy(("ftp.example.invalid", 21), resolver=no_such_host)
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(proxy)
    settle(proxy)
    diagnosed(proxy, "upstream.dns", 421, kind="dns", upstream="ftp.example.invalid:21")
    check_golden("upstream_dns", proxy)
