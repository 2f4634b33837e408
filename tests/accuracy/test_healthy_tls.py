"""Healthy FTPS sessions raise no alarm: ftplib (resuming its TLS session), curl and lftp with
explicit TLS and protected data, against vsftpd (``require_ssl_reuse=YES``), ProFTPD and
Pure-FTPd with TLS required, through the intercepting proxy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.certs import KeyPair, ensure_ca, mint_leaf
from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
from ftpdiag.testing import ProxyHandle
from tests.accuracy.clients import UPLOAD, Job, _run, ftplib_operations, tool
from tests.accuracy.conftest import TALLY, alarms, sessions, transcript
from tests.interop.servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    SessionReuseFTP_TLS,
    VsftpdServer,
    running,
)

pytestmark = pytest.mark.timeout(90)

DATA = os.urandom(1 << 20)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """ftpdiag's CA and the certificate it shows clients."""
    directory = tmp_path_factory.mktemp("healthy-tls-ca")
    authority, _ = ensure_ca(directory)
    return authority, mint_leaf(authority, ["127.0.0.1"], directory)


@pytest.fixture(scope="module", params=[VsftpdServer, ProftpdServer, PureftpdServer])
def ftps_server(request: pytest.FixtureRequest) -> Iterator[FTPServer]:
    """Each server with explicit FTPS required, once per module."""
    with running(request.param, tls=True) as srv:
        yield srv


def ftplib_tls(job: Job, ca: tuple[KeyPair, KeyPair]) -> None:
    import ssl

    ftp = SessionReuseFTP_TLS(context=ssl.create_default_context(cafile=str(ca[0].cert)))
    ftp.connect(job.host, job.port, timeout=10)
    ftp.auth()
    ftp.login(job.user, job.password)
    ftp.prot_p()
    ftplib_operations(ftp, job)


def curl_tls(job: Job, ca: tuple[KeyPair, KeyPair]) -> None:
    base = [tool("curl"), "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", str(ca[0].cert)]
    base += ["--ftp-pasv", "-u", f"{job.user}:{job.password}"]
    url = f"ftp://{job.host}:{job.port}/"
    _run([*base, "-o", "out.bin", url + "data.bin"], job)
    (job.work / "local.bin").write_bytes(UPLOAD)
    _run([*base, "-T", "local.bin", url + "up-curl.bin"], job)
    job.check_download(job.work / "out.bin")
    job.check_upload("up-curl.bin", UPLOAD)


def lftp_tls(job: Job, ca: tuple[KeyPair, KeyPair]) -> None:
    (job.work / "local.bin").write_bytes(UPLOAD)
    script = (
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set ssl:ca-file {ca[0].cert}; set ssl:check-hostname no; set net:max-retries 1; "
        f"set net:timeout 10; set cmd:fail-exit yes; open -u {job.user},{job.password} "
        f"{job.host}:{job.port}; ls; get data.bin -o out.bin; put local.bin -o up-lftp.bin"
    )
    _run([tool("lftp"), "-c", script], job)
    job.check_download(job.work / "out.bin")
    job.check_upload("up-lftp.bin", UPLOAD)


CLIENTS: dict[str, Callable[[Job, tuple[KeyPair, KeyPair]], None]] = {
    "ftplib-tls": ftplib_tls,
    "curl-tls": curl_tls,
    "lftp-tls": lftp_tls,
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_healthy_ftps_session_has_no_alarm(
    ftps_server: FTPServer,
    client: str,
    ca: tuple[KeyPair, KeyPair],
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tmp_path: Path,
) -> None:
    """FTPS through the intercepting proxy: bytes right, no error, no root cause."""
    assert ftps_server.cert is not None
    ftps_server.write_file("data.bin", DATA)
    tls = ProxyTLS(
        ClientFacingTLS(ca[1].cert, ca[1].key),
        UpstreamTLS("127.0.0.1", True, Path(ftps_server.cert.cert)),
    )
    proxy = ftpdiag_proxy((ftps_server.host, ftps_server.port), tls=tls, client_tls="explicit")
    root = Path(ftps_server.root)
    job = Job(proxy.host, proxy.port, ftps_server.user, ftps_server.password, DATA, root, tmp_path)
    CLIENTS[client](job, ca)
    found: list[Any] = []
    for session in sessions(proxy):
        TALLY.healthy += 1
        if problems := alarms(session):
            TALLY.false_alarms.append(f"{client} × {ftps_server.name} (TLS): {problems}")
            found.append(transcript(session))
    assert not found, "\n\n".join(found)
