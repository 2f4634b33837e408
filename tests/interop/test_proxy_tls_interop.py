"""FTPS through the proxy against real servers: vsftpd with ``require_ssl_reuse=YES``, ProFTPD
(mod_tls) and Pure-FTPd, with ftplib, curl and lftp as clients. RETR and STOR under PROT P in
passive and active mode, byte-exact; the server-side data connections resume the control
connection's TLS session, which vsftpd insists on."""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.certs import KeyPair, ensure_ca, mint_leaf
from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
from ftpdiag.testing import ProxyHandle
from tests.interop.servers import FTPServer, SessionReuseFTP_TLS, client_tls_context

TIMEOUT = 20


@pytest.fixture(scope="module")
def proxy_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    directory = tmp_path_factory.mktemp("proxy-ca")
    ca, _ = ensure_ca(directory)
    return ca, mint_leaf(ca, ["127.0.0.1"], directory)


@pytest.fixture
def tls_proxy(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    ftps_server: FTPServer,
    proxy_ca: tuple[KeyPair, KeyPair],
) -> ProxyHandle:
    """A proxy terminating TLS on both sides, trusting the server's self-signed certificate."""
    assert ftps_server.cert is not None
    tls = ProxyTLS(
        ClientFacingTLS(proxy_ca[1].cert, proxy_ca[1].key),
        UpstreamTLS("127.0.0.1", True, Path(ftps_server.cert.cert)),
    )
    return ftpdiag_proxy((ftps_server.host, ftps_server.port), tls=tls, client_tls="explicit")


def write_payload(server: FTPServer, name: str, data: bytes) -> None:
    path = Path(server.root) / name
    path.write_bytes(data)
    path.chmod(0o644)


def check_events(proxy: ProxyHandle, transfers: int, server: FTPServer) -> None:
    """One protected data connection per transfer, all 226; toward vsftpd (which refuses
    anything else) every one resumed a TLS session."""
    proxy.wait_for("session.close", timeout=TIMEOUT)
    assert not [e for e in proxy.events if e["event"] in ("proxy.internal_error", "tls.failed")]
    data = [e for e in proxy.events if e["event"] == "tls.established" and e["channel"] == "data"]
    server_side = [e for e in data if e["side"] == "server"]
    assert len(server_side) == transfers
    if server.name == "vsftpd":
        assert all(e["resumed"] for e in server_side)
    assert [e["outcome"] for e in proxy.events if e["event"] == "transfer.end"] == [226] * transfers


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_prot_p_retr_and_stor(
    tls_proxy: ProxyHandle,
    ftps_server: FTPServer,
    proxy_ca: tuple[KeyPair, KeyPair],
    payload: tuple[bytes, str],
    passive: bool,
) -> None:
    """ftplib FTP_TLS (resuming its session) through the proxy: RETR and STOR under PROT P."""
    data, digest = payload
    write_payload(ftps_server, "down.bin", data)
    ftp = SessionReuseFTP_TLS(context=client_tls_context(_pair(proxy_ca[0])), timeout=TIMEOUT)
    ftp.connect(*tls_proxy.address)
    ftp.auth()
    ftp.login(ftps_server.user, ftps_server.password)
    ftp.prot_p()
    ftp.set_pasv(passive)
    got = hashlib.sha256()
    ftp.retrbinary("RETR down.bin", got.update)
    ftp.storbinary("STOR up.bin", io.BytesIO(data))
    ftp.quit()
    assert got.hexdigest() == digest
    assert hashlib.sha256((Path(ftps_server.root) / "up.bin").read_bytes()).hexdigest() == digest
    check_events(tls_proxy, 2, ftps_server)


def test_curl_through_the_proxy(
    tls_proxy: ProxyHandle,
    ftps_server: FTPServer,
    proxy_ca: tuple[KeyPair, KeyPair],
    payload: tuple[bytes, str],
    tmp_path: Path,
) -> None:
    """curl --ssl-reqd with the proxy CA, passive: download and upload byte-exact.

    Active mode is not exercised with curl: this Debian curl hangs in active FTPS even
    directly against vsftpd ("sa_addr inet_ntop() failed with errno 97" after accepting the
    data connection), so it would test curl, not the proxy. ftplib and lftp cover active FTPS.
    """
    data, digest = payload
    write_payload(ftps_server, "down.bin", data)
    base = f"ftp://{ftps_server.user}:{ftps_server.password}@127.0.0.1:{tls_proxy.port}/"
    common = ["curl", "-sS", "--ssl-reqd", "--cacert", str(proxy_ca[0].cert), "--ftp-pasv"]
    out = tmp_path / "out.bin"
    subprocess.run([*common, "-o", str(out), base + "down.bin"], check=True, timeout=TIMEOUT)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    subprocess.run([*common, "-T", str(src), base + "curl-up.bin"], check=True, timeout=TIMEOUT)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert (
        hashlib.sha256((Path(ftps_server.root) / "curl-up.bin").read_bytes()).hexdigest() == digest
    )


@pytest.mark.parametrize("passive", ["on", "off"])
def test_lftp_through_the_proxy(
    tls_proxy: ProxyHandle,
    ftps_server: FTPServer,
    proxy_ca: tuple[KeyPair, KeyPair],
    payload: tuple[bytes, str],
    tmp_path: Path,
    passive: str,
    request: pytest.FixtureRequest,
) -> None:
    """lftp with forced TLS and protected data: get and put byte-exact, each in one attempt
    (lftp resumes a failed upload silently, so the proxy's log is checked too)."""
    data, digest = payload
    write_payload(ftps_server, "down.bin", data)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    script = (
        f"set ftp:passive-mode {passive}; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set ssl:ca-file {proxy_ca[0].cert}; set ssl:check-hostname no; set net:max-retries 1; "
        f"set net:timeout 10; open -u {ftps_server.user},{ftps_server.password} "
        f"127.0.0.1:{tls_proxy.port}; get down.bin -o {tmp_path / 'out.bin'}; "
        f"put {src} -o lftp-up.bin; bye"
    )
    subprocess.run(["lftp", "-c", script], check=True, timeout=60, capture_output=True)
    tls_proxy.wait_for("session.close", timeout=TIMEOUT)
    outcomes = [e["outcome"] for e in tls_proxy.events if e["event"] == "transfer.end"]
    assert outcomes == [226, 226], "lftp had to retry a transfer that failed through the proxy"
    assert hashlib.sha256((tmp_path / "out.bin").read_bytes()).hexdigest() == digest
    assert (
        hashlib.sha256((Path(ftps_server.root) / "lftp-up.bin").read_bytes()).hexdigest() == digest
    )


def test_plain_client_to_vsftpd_requiring_tls_and_reuse(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    vsftpd_tls_server: FTPServer,
    payload: tuple[bytes, str],
) -> None:
    """--upstream-tls explicit: a plain ftplib client downloads from vsftpd, which demands TLS
    and session reuse; the proxy's data connections resume its control session."""
    import ftplib

    data, digest = payload
    write_payload(vsftpd_tls_server, "down.bin", data)
    assert vsftpd_tls_server.cert is not None
    tls = ProxyTLS(None, UpstreamTLS("127.0.0.1", True, Path(vsftpd_tls_server.cert.cert)))
    proxy = ftpdiag_proxy(
        (vsftpd_tls_server.host, vsftpd_tls_server.port), tls=tls, upstream_tls="explicit"
    )
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*proxy.address)
    ftp.login(vsftpd_tls_server.user, vsftpd_tls_server.password)
    for _ in range(3):  # each data connection must resume a session vsftpd knows
        got = hashlib.sha256()
        ftp.retrbinary("RETR down.bin", got.update)
        assert got.hexdigest() == digest
    ftp.quit()
    check_events(proxy, 3, vsftpd_tls_server)


def _pair(ca: KeyPair) -> Any:
    """client_tls_context takes the harness's CertPair; it only reads ``.cert``."""
    return ca
