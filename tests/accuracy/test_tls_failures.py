"""TLS faults people hit, on real servers through the intercepting proxy: TLS required on the
control or data channel, an implicit-TLS port, certificates the proxy cannot trust, and a
client that does not resume its TLS session on data connections."""

from __future__ import annotations

import ftplib
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler

from ftpdiag.certs import ensure_ca, mint_leaf
from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
from ftpdiag.testing import ProxyHandle
from tests.accuracy.scenarios import TIMEOUT, Proxy, Pureftpd, Vsftpd, bye, judge, login
from tests.fake_servers import FakeFTPServer
from tests.interop.servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    SessionReuseFTP_TLS,
    VsftpdServer,
    make_self_signed_cert,
    running,
)

pytestmark = pytest.mark.timeout(60)


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


class _UncleanTLSData(TLS_DTPHandler):  # type: ignore[misc]
    """pyftpdlib's TLS data channel closing its socket without a TLS close_notify."""

    def close(self) -> None:
        self._error = True  # pyftpdlib skips SSL_shutdown on a connection in error
        super().close()


def test_server_without_tls_close_notify(
    ftpdiag_proxy: Proxy, proxy_ca: tuple[Any, Any], tmp_path: Path
) -> None:
    """A server that ends protected downloads without close_notify (a fake: the real servers
    here all close cleanly): the client's transfer breaks although the server said 226."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(os.urandom(200_000))
    cert = make_self_signed_cert(tmp_path / "tls")
    attrs = {"certfile": str(cert.cert), "keyfile": str(cert.key), "dtp_handler": _UncleanTLSData}
    with FakeFTPServer(root, handler_base=TLS_FTPHandler, handler_attrs=attrs) as srv:
        upstream = UpstreamTLS("127.0.0.1", True, Path(cert.cert))
        tls = ProxyTLS(ClientFacingTLS(proxy_ca[1].cert, proxy_ca[1].key), upstream)
        proxy = ftpdiag_proxy(srv.address, tls=tls, client_tls="explicit")
        ftp = SessionReuseFTP_TLS(context=_client_context(proxy_ca), timeout=TIMEOUT)
        ftp.connect(proxy.host, proxy.port)
        ftp.auth()
        ftp.login(srv.user, srv.password)
        ftp.prot_p()
        with pytest.raises(OSError):
            ftp.retrbinary("RETR data.bin", lambda _: None)
        bye(ftp)
        judge("no TLS close_notify × pyftpdlib", proxy, "tls.unclean_close", "TLS shutdown")
