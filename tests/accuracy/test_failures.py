"""Common failures, reproduced with real servers configured to fail, diagnosed right: the root
cause (or, when the proxy saves the session, the headline warning) names the fault, and the
remedy names the setting to change.

Each scenario runs a real server with one setting changed (vsftpd.conf lines, proftpd.conf
directives, Pure-FTPd flags), through a fresh proxy, with a real client; fakes stand in only
for peers no FTP server can be (an SSH server, a mail server). TLS faults are in
test_tls_failures.py.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.testing import ProxyHandle
from tests.accuracy.clients import tool
from tests.accuracy.conftest import TALLY, sessions, summary_of, transcript
from tests.accuracy.scenarios import (
    TIMEOUT,
    Proftpd,
    Proxy,
    Pureftpd,
    Vsftpd,
    any_server,
    bye,
    headline,
    judge,
    login,
)
from tests.interop.servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    VsftpdServer,
    running,
    unavailable,
)

pytestmark = pytest.mark.timeout(60)


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


def test_missing_secure_chroot_dir_vsftpd(ftpdiag_proxy: Proxy, tmp_path: Path) -> None:
    """secure_chroot_dir names a directory that does not exist: vsftpd greets with 500 OOPS."""
    conf = {"secure_chroot_dir": str(tmp_path / "missing")}
    with running(Vsftpd, conf=conf, greets=False) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        with pytest.raises((ftplib.Error, EOFError, OSError)):
            login(proxy, srv.user, srv.password)
        judge("missing secure_chroot_dir × vsftpd", proxy, "server.secure_chroot_dir", "mkdir")


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
    with any_server(server, tmp_path) as (address, user, password):
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


@contextlib.contextmanager
def small_mount(path: Path, uid: int, gid: int, *, read_only: bool) -> Iterator[Path]:
    """A 256 KiB tmpfs at ``path`` owned by the FTP user, read-only if asked; unmounted after.
    Needs root (as the real servers do)."""
    path.mkdir()
    options = f"size=256k,uid={uid},gid={gid},mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "ftpdiag-accuracy", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs for the file-system scenarios: {done.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False, capture_output=True)


@pytest.mark.parametrize(
    ("read_only", "rule", "remedy"),
    # On a full disk the servers say only "Input/output error" or "Error during write to
    # file": the upload's storage failure, with free space first in its fix, is all the wire
    # can tell.
    [(False, "transfer.storage", "free space"), (True, "server.read_only_fs", "remount")],
    ids=["full", "read-only"],
)
def test_file_system_refuses_upload_proftpd(
    read_only: bool, rule: str, remedy: str, ftpdiag_proxy: Proxy
) -> None:
    """A full (256 KiB) or read-only file system under the upload directory: the headline
    names the storage, not a permission."""
    with (
        running(ProftpdServer) as srv,
        small_mount(srv.root / "store", srv.uid, srv.gid, read_only=read_only),
    ):
        proxy = ftpdiag_proxy((srv.host, srv.port))
        ftp = login(proxy, srv.user, srv.password)
        with pytest.raises(ftplib.Error):
            ftp.storbinary("STOR store/big.bin", io.BytesIO(os.urandom(1 << 20)))
        bye(ftp)
        judge(f"{'read-only' if read_only else 'full'} file system × proftpd", proxy, rule,
                  remedy)  # fmt: skip


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
