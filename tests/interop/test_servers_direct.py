"""The interop harness itself, with no proxy: real clients talk straight to real servers."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from .servers import (
    FTPServer,
    SessionReuseFTP_TLS,
    VsftpdServer,
    client_tls_context,
    unavailable,
)

TIMEOUT = 30  # seconds, for every client socket and subprocess
MODES = ["passive", "active"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tool(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if path is None:
        unavailable(f"{name} not found on PATH: run scripts/test.sh which installs it")
    return path


def run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp_path)}  # lftp keeps history/cache under $HOME
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"{cmd[0]} exited {proc.returncode}: {proc.stderr}{proc.stdout}"
    return proc


def connect(srv: FTPServer, ftp: ftplib.FTP, mode: str) -> ftplib.FTP:
    ftp.connect(srv.host, srv.port, timeout=TIMEOUT)
    ftp.login(srv.user, srv.password)
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.prot_p()
    ftp.set_pasv(mode == "passive")
    return ftp


def retr(ftp: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


def roundtrip(srv: FTPServer, ftp: ftplib.FTP, payload: tuple[bytes, str], name: str) -> None:
    data, digest = payload
    ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    assert sha256((srv.root / name).read_bytes()) == digest
    assert sha256(retr(ftp, name)) == digest
    listing: list[str] = []
    ftp.retrlines("LIST", listing.append)
    assert any(line.endswith(f" {name}") and str(len(data)) in line for line in listing), listing
    ftp.quit()


# ---- plain FTP on every server ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_ftplib_store_retrieve_list(
    ftp_server: FTPServer, payload: tuple[bytes, str], mode: str
) -> None:
    """ftplib logs in, STORs then RETRs 3 MB byte-exactly and LISTs it, in each data mode."""
    ftp = connect(ftp_server, ftplib.FTP(), mode)
    roundtrip(ftp_server, ftp, payload, f"ftplib-{mode}.bin")


@pytest.mark.parametrize("mode", MODES)
def test_curl_download(
    ftp_server: FTPServer, payload: tuple[bytes, str], tmp_path: Path, mode: str
) -> None:
    """curl downloads 3 MB byte-exactly in each data mode."""
    data, digest = payload
    ftp_server.write_file("curl.bin", data)
    mode_args = ["--ftp-pasv"] if mode == "passive" else ["--ftp-port", ftp_server.host]
    run(
        [
            tool("curl"),
            "-sS",
            *mode_args,
            "--connect-timeout",
            "5",
            "--max-time",
            "20",
            "-o",
            "out.bin",
            ftp_server.url("curl.bin"),
        ],
        tmp_path,
    )
    assert sha256((tmp_path / "out.bin").read_bytes()) == digest


def lftp_script(srv: FTPServer, mode: str, remote: str, settings: str = "") -> str:
    passive = "on" if mode == "passive" else "off"
    return (
        f"set net:max-retries 1; set net:timeout 5; set net:reconnect-interval-base 1; "
        f"set cmd:fail-exit yes; set ftp:passive-mode {passive}; {settings} "
        f"open -u {srv.user},{srv.password} {srv.host}:{srv.port}; get {remote} -o out.bin"
    )


@pytest.mark.parametrize("mode", MODES)
def test_lftp_download(
    ftp_server: FTPServer, payload: tuple[bytes, str], tmp_path: Path, mode: str
) -> None:
    """lftp downloads 3 MB byte-exactly in each data mode."""
    data, digest = payload
    ftp_server.write_file("lftp.bin", data)
    script = lftp_script(ftp_server, mode, "lftp.bin", "set ftp:ssl-allow no;")
    run([tool("lftp"), "-c", script], tmp_path)
    assert sha256((tmp_path / "out.bin").read_bytes()) == digest


def test_vsftpd_anonymous_is_read_only(vsftpd_server: VsftpdServer) -> None:
    """vsftpd lets ``anonymous`` log in without a password and read, but not write."""
    ftp = ftplib.FTP()
    ftp.connect(vsftpd_server.host, vsftpd_server.port, timeout=TIMEOUT)
    assert ftp.login(vsftpd_server.anon_user, vsftpd_server.anon_password).startswith("230")
    assert retr(ftp, "welcome.txt") == (vsftpd_server.anon_root / "welcome.txt").read_bytes()
    assert sorted(ftp.nlst()) == ["pub", "welcome.txt"]
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.storbinary("STOR pub/x.bin", io.BytesIO(b"x"))
    ftp.quit()


def test_wrong_password_is_refused(ftp_server: FTPServer) -> None:
    """Every server answers a wrong password with 530 (Pure-FTPd only after its built-in delay)."""
    ftp = ftplib.FTP()
    ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.login(ftp_server.user, "not-the-password")
    ftp.close()


# ---- explicit FTPS ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_ftps_store_retrieve_list(
    ftps_server: FTPServer, payload: tuple[bytes, str], mode: str
) -> None:
    """FTP_TLS with PROT P and TLS session reuse round-trips 3 MB, verifying the IP-SAN cert."""
    ftp = SessionReuseFTP_TLS(context=client_tls_context(ftps_server.cert))
    connect(ftps_server, ftp, mode)
    roundtrip(ftps_server, ftp, payload, f"ftps-{mode}.bin")


def test_vsftpd_tls_stock_ftplib_is_refused_without_session_reuse(
    vsftpd_tls_server: VsftpdServer,
) -> None:
    """Stock ftplib.FTP_TLS (no session reuse on data) gets vsftpd's 522 with require_ssl_reuse."""
    vsftpd_tls_server.write_file("f.bin", b"data")
    ftp = connect(vsftpd_tls_server, ftplib.FTP_TLS(context=client_tls_context()), "passive")
    with pytest.raises(ftplib.error_perm, match=r"^522 .*session reuse required"):
        retr(ftp, "f.bin")
    ftp.close()


@pytest.mark.parametrize("fixture", ["proftpd_tls_server", "pureftpd_tls_server"])
def test_stock_ftplib_tls_without_reuse_requirement(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    """Stock ftplib.FTP_TLS with PROT P works against ProFTPD and Pure-FTPd as configured."""
    srv: FTPServer = request.getfixturevalue(fixture)
    srv.write_file("f.bin", b"data" * 1000)
    ftp = connect(srv, ftplib.FTP_TLS(context=client_tls_context(srv.cert)), "passive")
    assert retr(ftp, "f.bin") == b"data" * 1000
    ftp.quit()


def test_vsftpd_tls_refuses_cleartext_login(vsftpd_tls_server: VsftpdServer) -> None:
    """vsftpd with force_local_logins_ssl answers a cleartext USER with 530."""
    ftp = ftplib.FTP()
    ftp.connect(vsftpd_tls_server.host, vsftpd_tls_server.port, timeout=TIMEOUT)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.login(vsftpd_tls_server.user, vsftpd_tls_server.password)
    ftp.close()


def test_curl_ftps_download(
    ftps_server: FTPServer, payload: tuple[bytes, str], tmp_path: Path
) -> None:
    """curl with --ssl-reqd downloads 3 MB byte-exactly, verifying the server cert."""
    assert ftps_server.cert is not None
    data, digest = payload
    ftps_server.write_file("curl.bin", data)
    run(
        [
            tool("curl"),
            "-sS",
            "--ftp-pasv",
            "--ssl-reqd",
            "--cacert",
            str(ftps_server.cert.cert),
            "--connect-timeout",
            "5",
            "--max-time",
            "20",
            "-o",
            "out.bin",
            ftps_server.url("curl.bin"),
        ],
        tmp_path,
    )
    assert sha256((tmp_path / "out.bin").read_bytes()) == digest


def test_lftp_ftps_download(
    ftps_server: FTPServer, payload: tuple[bytes, str], tmp_path: Path
) -> None:
    """lftp with ftp:ssl-force and PROT P downloads 3 MB byte-exactly, verifying the cert."""
    assert ftps_server.cert is not None
    data, digest = payload
    ftps_server.write_file("lftp.bin", data)
    settings = (
        "set ftp:ssl-force yes; set ftp:ssl-protect-data yes; "
        f"set ssl:ca-file {ftps_server.cert.cert}; set ssl:verify-certificate yes;"
    )
    run([tool("lftp"), "-c", lftp_script(ftps_server, "passive", "lftp.bin", settings)], tmp_path)
    assert sha256((tmp_path / "out.bin").read_bytes()) == digest


def test_tls_context_rejects_other_certificate(
    vsftpd_tls_server: VsftpdServer, tmp_path: Path
) -> None:
    """A client trusting a different self-signed cert fails verification (the check is real)."""
    from .servers import make_self_signed_cert

    other = make_self_signed_cert(tmp_path)
    ftp = ftplib.FTP_TLS(context=client_tls_context(other))
    ftp.connect(vsftpd_tls_server.host, vsftpd_tls_server.port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        ftp.auth()
    ftp.close()
