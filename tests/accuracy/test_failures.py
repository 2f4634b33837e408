"""Common failures, reproduced with real servers configured to fail, diagnosed right: the root
cause (or, when the proxy saves the session, the headline warning) names the fault, and the
remedy names the setting to change.

Each scenario runs a real server with one setting changed (vsftpd.conf lines, proftpd.conf
directives, Pure-FTPd flags, a pyftpdlib attribute), through a fresh proxy, with a real
client; fakes stand in only for peers no FTP server can be (an SSH server, a mail server).
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.certs import ensure_ca, mint_leaf
from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
from ftpdiag.testing import ProxyHandle
from tests.accuracy.clients import tool
from tests.accuracy.conftest import TALLY, sessions, summary_of, transcript
from tests.fake_servers import FakeFTPServer
from tests.interop.servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    VsftpdServer,
    running,
)

pytestmark = pytest.mark.timeout(60)

Proxy = Callable[..., ProxyHandle]
TIMEOUT = 10


# ---- servers with one setting changed -----------------------------------------------------------
class Vsftpd(VsftpdServer):
    """vsftpd with some vsftpd.conf lines replaced; ``greets=False`` for a server that does
    not send a plain 220 (implicit TLS): ready once its port accepts connections."""

    def __init__(self, conf: dict[str, str], greets: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conf, self.greets = conf, greets

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        path = Path(cmd[1])
        lines = dict(line.split("=", 1) for line in path.read_text().splitlines() if line)
        lines.update(self.conf)
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return cmd

    def wait_ready(self, timeout: float = 10.0) -> str:
        if self.greets:
            return super().wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return ""
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"vsftpd did not listen on {self.port}:\n{self.log_text()}")


class Proftpd(ProftpdServer):
    """ProFTPD with extra directives appended to proftpd.conf."""

    def __init__(self, extra: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extra = extra

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        conf = Path(cmd[-1])
        conf.write_text(conf.read_text() + self.extra + "\n")
        return cmd


class Pureftpd(PureftpdServer):
    """Pure-FTPd with flags replaced (``{"-C": "1"}``) or added."""

    def __init__(self, flags: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flags = flags

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        for flag, value in self.flags.items():
            if flag in cmd:
                cmd[cmd.index(flag) + 1] = value
            else:
                cmd += [flag, value]
        return cmd


# ---- the judge ----------------------------------------------------------------------------------
def headline(session: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the session's summary puts first: its root cause, else its top problem."""
    summary = summary_of(session)
    if summary["root_cause"]:
        rule = summary["root_cause"]["rule"]
    elif summary["diagnoses"]:
        rule = summary["diagnoses"][0]["rule"]
    else:
        return None
    return next(e for e in session if e["event"] == "diagnosis" and e["rule"] == rule)


def judge(
    name: str, proxy: ProxyHandle, rule: str, remedy: str, *, root_cause: bool = True
) -> None:
    """Count the scenario; its last session's headline must be ``rule`` with ``remedy`` in its
    fix (and a root cause, unless the proxy saved the session: ``root_cause=False``)."""
    session = sessions(proxy)[-1]
    TALLY.scenarios += 1
    found = headline(session)
    summary = summary_of(session)
    right = (
        found is not None
        and found["rule"] == rule
        and remedy in found["remedy"]
        and (summary["root_cause"] is not None) == root_cause
    )
    if not right:
        got = found["rule"] if found else None
        TALLY.wrong.append(f"{name}: expected {rule}, got {got}")
    assert right, f"{name}: expected {rule} ({remedy!r}):\n{transcript(session)}"


def login(proxy: ProxyHandle, user: str, password: str) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(proxy.host, proxy.port)
    ftp.login(user, password)
    return ftp


def bye(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (ftplib.Error, OSError, EOFError):
        ftp.close()


# ---- logins -------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [VsftpdServer, ProftpdServer, PureftpdServer])
def test_wrong_password(server: type[FTPServer], ftpdiag_proxy: Proxy) -> None:
    """A wrong password: login.failed, with the account checks to make."""
    with running(server) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises(ftplib.error_perm, match="530"):
            login(proxy, srv.user, "wrong-password")
        judge(f"wrong password × {srv.name}", proxy, "login.failed", "password")


def test_anonymous_disabled_pureftpd(ftpdiag_proxy: Proxy) -> None:
    """Pure-FTPd -E: 'This is a private system - No anonymous login'."""
    with running(PureftpdServer) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises(ftplib.error_perm):
            login(proxy, "anonymous", "guest@example.invalid")
        judge("anonymous disabled × pure-ftpd", proxy, "login.anonymous_refused", "without -E")


def test_anonymous_disabled_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """vsftpd anonymous_enable=NO answers anonymous like a wrong password."""
    with running(Vsftpd, conf={"anonymous_enable": "NO"}) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises(ftplib.error_perm, match="530"):
            login(proxy, "anonymous", "guest@example.invalid")
        judge("anonymous disabled × vsftpd", proxy, "login.anonymous_refused",
              "anonymous_enable=YES")  # fmt: skip


def test_writable_chroot_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """chroot_local_user into a directory the user owns, allow_writeable_chroot=NO: 500 OOPS."""
    with running(Vsftpd, conf={"allow_writeable_chroot": "NO"}) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            login(proxy, srv.user, srv.password)
        judge("writable chroot × vsftpd", proxy, "server.writable_chroot",
              "allow_writeable_chroot=YES")  # fmt: skip


# ---- limits -------------------------------------------------------------------------------------
def _first_session(proxy: ProxyHandle, srv: FTPServer) -> ftplib.FTP:
    """Log in once the server has let go of its readiness probe's connection (bounded): a
    limit of one per address counts it for a moment after its QUIT."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return login(proxy, srv.user, srv.password)
        except ftplib.error_temp:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize(
    ("server", "setting", "rule", "remedy"),
    [
        (Vsftpd, {"conf": {"max_per_ip": "1"}}, "greeting.too_many", "max_per_ip"),
        (Proftpd, {"extra": "MaxClientsPerHost 1"}, "login.too_many", "MaxClientsPerHost"),
        (Pureftpd, {"flags": {"-C": "1"}}, "greeting.too_many", "pure-ftpd -c/-C"),
    ],
    ids=["vsftpd", "proftpd", "pure-ftpd"],
)
def test_connections_per_ip(
    server: type[FTPServer],
    setting: dict[str, Any],
    rule: str,
    remedy: str,
    ftpdiag_proxy: Proxy,
) -> None:
    """One session per address allowed: the second session is refused, and says why."""
    with running(server, **setting) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        first = _first_session(proxy, srv)
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            second = login(proxy, srv.user, srv.password)
            second.voidcmd("NOOP")
        bye(first)
        all_sessions = sessions(proxy, 2)
        assert not summary_of(all_sessions[-2])["root_cause"], "the admitted session is healthy"
        TALLY.scenarios += 1
        found = headline(all_sessions[-1])
        if not (found and found["rule"] == rule and remedy in found["remedy"]):
            TALLY.wrong.append(f"per-IP limit × {srv.name}: got {found and found['rule']}")
            raise AssertionError(transcript(all_sessions[-1]))


# ---- files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["pyftpdlib", "vsftpd", "proftpd", "pure-ftpd"])
def test_missing_file(server: str, ftpdiag_proxy: Proxy, tmp_path: Path) -> None:
    """RETR of a file that is not there: a file that cannot be found or opened."""
    expected = {"vsftpd": ("file.unavailable", "LIST")}.get(server, ("file.not_found", "LIST"))
    with _any_server(server, tmp_path) as (address, user, password):
        proxy = ftpdiag_proxy(address)
        ftp = login(proxy, user, password)
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.retrbinary("RETR missing.bin", lambda _: None)
        bye(ftp)
        judge(f"missing file × {server}", proxy, *expected)


def test_upload_refused_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """vsftpd write_enable=NO: STOR is refused with 550 Permission denied."""
    with running(Vsftpd, conf={"write_enable": "NO"}) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.storbinary("STOR up.bin", io.BytesIO(b"x" * 100))
        bye(ftp)
        judge("write disabled × vsftpd", proxy, "file.permission", "write_enable")


def test_directory_not_writable_proftpd(ftpdiag_proxy: Proxy) -> None:
    """The user's directory is read-only (mode 0555): ProFTPD answers STOR with 550."""
    with running(ProftpdServer) as srv:
        srv.root.chmod(0o555)
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.storbinary("STOR up.bin", io.BytesIO(b"x" * 100))
        bye(ftp)
        judge("read-only directory × proftpd", proxy, "file.permission", "file ownership")


def test_ascii_mode_binary_file(ftpdiag_proxy: Proxy) -> None:
    """A zip downloaded in TYPE A (ftplib's retrlines): corrupted, TYPE I is the fix."""
    with running(ProftpdServer) as srv:
        srv.write_file("archive.zip", os.urandom(20000))
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        ftp.encoding = "latin-1"  # any byte is a character: the lines are thrown away
        ftp.retrlines("RETR archive.zip", lambda _: None)
        bye(ftp)
        judge("ASCII mode × proftpd", proxy, "transfer.ascii_binary", "TYPE I")


# ---- timeouts -----------------------------------------------------------------------------------
def test_idle_timeout_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """vsftpd idle_session_timeout=1: a pause after the login ends the session with 421."""
    with running(Vsftpd, conf={"idle_session_timeout": "1"}) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        time.sleep(2.5)
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            ftp.voidcmd("NOOP")
        ftp.close()
        judge("idle timeout × vsftpd", proxy, "control.idle_timeout", "idle_session_timeout")


def test_data_timeout_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """vsftpd data_connection_timeout=1 and a client that stops reading: 421 Data timeout."""
    with running(Vsftpd, conf={"data_connection_timeout": "1"}) as srv:
        srv.write_file("huge.bin", b"\0" * (48 << 20))
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        conn = ftp.transfercmd("RETR huge.bin")
        conn.recv(1000)  # then read nothing: every buffer on the way fills up
        proxy.wait_for("reply", code=421, timeout=20)
        conn.close()
        ftp.close()
        judge("data timeout × vsftpd", proxy, "transfer.server_gave_up", "data_connection_timeout")


# ---- addresses ----------------------------------------------------------------------------------
def test_pasv_nat_address_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """pasv_address=127.0.0.2: the 227 names another host than the server's; the proxy dials
    the control peer instead, so the download works and the warning names the setting."""
    with running(Vsftpd, conf={"pasv_address": "127.0.0.2", "pasv_promiscuous": "YES"}) as srv:
        srv.write_file("data.bin", b"d" * 5000)
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        ftp.retrbinary("RETR data.bin", lambda _: None)
        bye(ftp)
        judge("PASV NAT address × vsftpd", proxy, "pasv.nat_mismatch", "pasv_address",
              root_cause=False)  # fmt: skip


# ---- TLS ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [VsftpdServer, ProftpdServer, PureftpdServer])
def test_tls_required(server: type[FTPServer], ftpdiag_proxy: Proxy) -> None:
    """A server that requires FTPS and a plain-FTP client: tls.required, with the client fix."""
    with running(server, tls=True) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises(ftplib.Error):
            login(proxy, srv.user, srv.password)
        judge(f"TLS required × {srv.name}", proxy, "tls.required", "--ssl-reqd")


def test_implicit_tls_port_vsftpd(ftpdiag_proxy: Proxy) -> None:
    """vsftpd implicit_ssl=YES waits for a TLS handshake: a plain client gets no greeting."""
    conf = {"implicit_ssl": "YES"}
    with running(Vsftpd, conf=conf, greets=False, tls=True) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port), greeting_timeout=1.0)
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            ftplib.FTP(timeout=TIMEOUT).connect(proxy.host, proxy.port)
        judge("implicit TLS port × vsftpd", proxy, "greeting.missing", "--upstream-tls implicit")


@pytest.fixture(scope="module")
def proxy_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    directory = tmp_path_factory.mktemp("accuracy-ca")
    ca, _ = ensure_ca(directory)
    return ca, mint_leaf(ca, ["127.0.0.1"], directory)


def _tls_proxy(
    ftpdiag_proxy: Proxy, srv: FTPServer, ca: tuple[Any, Any], upstream: UpstreamTLS
) -> ProxyHandle:
    tls = ProxyTLS(ClientFacingTLS(ca[1].cert, ca[1].key), upstream)
    return ftpdiag_proxy((srv.host, srv.port), tls=tls, client_tls="explicit")


def _client_context(ca: tuple[Any, Any]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca[0].cert))


def test_client_without_session_reuse_vsftpd(
    ftpdiag_proxy: Proxy, proxy_ca: tuple[Any, Any]
) -> None:
    """ftplib's FTP_TLS does not resume its TLS session on data connections; vsftpd's
    require_ssl_reuse=YES refuses that directly. Through the proxy it works, and the warning
    says what breaks without it and the client-side fix."""
    with running(VsftpdServer, tls=True) as srv:
        assert srv.cert is not None
        srv.write_file("data.bin", b"t" * 5000)
        upstream = UpstreamTLS("127.0.0.1", True, Path(srv.cert.cert))
        proxy = _tls_proxy(ftpdiag_proxy, srv, proxy_ca, upstream)
        ftp = ftplib.FTP_TLS(context=_client_context(proxy_ca), timeout=TIMEOUT)
        ftp.connect(proxy.host, proxy.port)
        ftp.auth()
        ftp.login(srv.user, srv.password)
        ftp.prot_p()
        ftp.retrbinary("RETR data.bin", lambda _: None)
        bye(ftp)
        judge("no TLS session reuse × vsftpd", proxy, "tls.client_no_resume",
              "require_ssl_reuse=NO", root_cause=False)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "server_name", "trust", "reason"),
    [
        ("untrusted certificate", "127.0.0.1", False, "certificate"),
        ("host name mismatch", "ftp.example.invalid", True, "--upstream-ca"),
    ],
)
def test_server_certificate_refused(
    name: str,
    server_name: str,
    trust: bool,
    reason: str,
    ftpdiag_proxy: Proxy,
    proxy_ca: tuple[Any, Any],
) -> None:
    """A self-signed server certificate not trusted, or issued for another name: the proxy's
    verification fails and says how to trust or fix it."""
    with running(ProftpdServer, tls=True) as srv:
        assert srv.cert is not None
        ca_file = Path(srv.cert.cert) if trust else None
        proxy = _tls_proxy(ftpdiag_proxy, srv, proxy_ca, UpstreamTLS(server_name, True, ca_file))
        ftp = ftplib.FTP_TLS(context=_client_context(proxy_ca), timeout=TIMEOUT)
        ftp.connect(proxy.host, proxy.port)
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            ftp.auth()
            ftp.login(srv.user, srv.password)
        ftp.close()
        judge(f"{name} × proftpd", proxy, "tls.verify_failed", reason)


@pytest.mark.parametrize(
    ("server", "setting", "rule"),
    [
        (VsftpdServer, {}, "tls.required"),  # force_local_data_ssl=YES: 522
        (Pureftpd, {"flags": {"-Y": "3"}}, "tls.prot_p_required"),  # 521
    ],
    ids=["vsftpd", "pure-ftpd"],
)
def test_server_requires_prot_p(
    server: type[FTPServer],
    setting: dict[str, Any],
    rule: str,
    ftpdiag_proxy: Proxy,
    proxy_ca: tuple[Any, Any],
) -> None:
    """The client protects the control connection but lists with PROT C: the server wants
    PROT P, and the fix says so."""
    with running(server, tls=True, **setting) as srv:
        assert srv.cert is not None
        upstream = UpstreamTLS("127.0.0.1", True, Path(srv.cert.cert))
        proxy = _tls_proxy(ftpdiag_proxy, srv, proxy_ca, upstream)
        ftp = ftplib.FTP_TLS(context=_client_context(proxy_ca), timeout=TIMEOUT)
        ftp.connect(proxy.host, proxy.port)
        ftp.auth()
        ftp.login(srv.user, srv.password)
        with pytest.raises(ftplib.error_perm, match=r"^52"):
            ftp.retrlines("LIST", lambda _: None)
        bye(ftp)
        judge(f"PROT P required × {srv.name}", proxy, rule, "PROT P")


class ExpiredCertProftpd(ProftpdServer):
    """ProFTPD whose self-signed certificate expired yesterday."""

    def _prepare(self) -> list[str]:
        assert self.cert is not None
        _expired_cert(self.cert.cert, self.cert.key)
        return super()._prepare()


def _expired_cert(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def test_expired_server_certificate(ftpdiag_proxy: Proxy, proxy_ca: tuple[Any, Any]) -> None:
    """The server's certificate expired: the proxy refuses it and says to renew it."""
    with running(ExpiredCertProftpd, tls=True) as srv:
        assert srv.cert is not None
        upstream = UpstreamTLS("127.0.0.1", True, Path(srv.cert.cert))
        proxy = _tls_proxy(ftpdiag_proxy, srv, proxy_ca, upstream)
        ftp = ftplib.FTP_TLS(context=_client_context(proxy_ca), timeout=TIMEOUT)
        ftp.connect(proxy.host, proxy.port)
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            ftp.auth()
            ftp.login(srv.user, srv.password)
        ftp.close()
        judge("expired certificate × proftpd", proxy, "tls.verify_failed", "renew an expired")


# ---- not an FTP server (fakes: no FTP server can be one) ---------------------------------------
@pytest.fixture
def banner_server() -> Iterator[Callable[[bytes], tuple[str, int]]]:
    """A loopback TCP server that sends one banner and keeps the connection open (bounded)."""
    stops: list[threading.Event] = []

    def start(banner: bytes) -> tuple[str, int]:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        stop = threading.Event()
        stops.append(stop)

        def serve() -> None:
            with listener:
                conns = []
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    conn.sendall(banner)
                    conns.append(conn)
                for conn in conns:
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        address: tuple[str, int] = listener.getsockname()
        return address

    yield start
    for stop in stops:
        stop.set()


@pytest.mark.parametrize(
    ("name", "banner", "rule", "remedy"),
    [
        ("SSH server", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "peer.ssh", "SFTP"),
        ("mail server", b"220 mx.example.invalid ESMTP Postfix (Debian/GNU)\r\n", "peer.mail",
         "port"),
    ],
)  # fmt: skip
def test_not_an_ftp_server(
    name: str,
    banner: bytes,
    rule: str,
    remedy: str,
    banner_server: Callable[[bytes], tuple[str, int]],
    ftpdiag_proxy: Proxy,
) -> None:
    """People point FTP clients at port 22 or 25: the peer is named for what it is."""
    proxy = ftpdiag_proxy(banner_server(banner), greeting_timeout=1.0)
    ftp = ftplib.FTP(timeout=3)
    with pytest.raises((ftplib.Error, EOFError, OSError)):
        ftp.connect(proxy.host, proxy.port)
        ftp.login("someone", "secret")
    ftp.close()
    judge(name, proxy, rule, remedy)


@pytest.mark.parametrize(
    ("name", "command", "rule", "remedy"),
    [
        (
            "implicit-FTPS client",
            ["curl", "-sS", "--max-time", "5", "-k", "ftps://{host}:{port}/"],
            "client.implicit_tls",
            "--listen-tls implicit",
        ),
        (
            "SFTP client",
            ["ssh", "-p", "{port}", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "nobody@{host}", "true"],
            "client.sftp",
            "protocol 'FTP",
        ),
    ],
)  # fmt: skip
def test_client_that_is_no_ftp_client(
    name: str, command: list[str], rule: str, remedy: str, ftpdiag_proxy: Proxy, tmp_path: Path
) -> None:
    """People point an implicit-FTPS or SFTP client at an FTP port: the client is named."""
    with running(ProftpdServer) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        args = [a.format(host=proxy.host, port=proxy.port) for a in command]
        args[0] = tool(args[0])
        done = subprocess.run(
            args, capture_output=True, timeout=20, check=False, stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert done.returncode != 0, "the client cannot have succeeded"
        judge(f"{name} × proftpd", proxy, rule, remedy)


def test_nothing_listens(ftpdiag_proxy: Proxy) -> None:
    """The server's port is closed: the client gets 421 and the proxy names the cause."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = ftpdiag_proxy(("127.0.0.1", port))
    with pytest.raises((ftplib.Error, EOFError, OSError)):
        ftplib.FTP(timeout=TIMEOUT).connect(proxy.host, proxy.port)
    judge("nothing listens", proxy, "upstream.refused", "listens on that port")


# ---- helpers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _any_server(name: str, tmp_path: Path) -> Iterator[tuple[tuple[str, int], str, str]]:
    """pyftpdlib or a real server by name, yielding (address, user, password)."""
    if name == "pyftpdlib":
        root = tmp_path / "root"
        root.mkdir()
        with FakeFTPServer(root) as fake:
            yield fake.address, fake.user, fake.password
        return
    cls = {"vsftpd": VsftpdServer, "proftpd": ProftpdServer, "pure-ftpd": PureftpdServer}[name]
    with running(cls) as srv:
        yield (srv.host, srv.port), srv.user, srv.password
