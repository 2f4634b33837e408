"""FTPS through the proxy, end to end: pyftpdlib's TLS handler upstream, Python's FTP_TLS (and
curl) as clients, certificates generated at test time. Covers explicit AUTH TLS mirrored and
proxy-initiated, implicit FTPS on either side, data channels under PROT P with session
resumption, verification failures, a client that distrusts the proxy CA, and pass-through."""

from __future__ import annotations

import ftplib
import hashlib
import io
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.handlers import TLS_FTPHandler

from ftpdiag.certs import KeyPair, ensure_ca, mint_leaf
from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
from ftpdiag.testing import ProxyHandle
from tests.fake_servers import make_file

TIMEOUT = 10


@dataclass
class Pki:
    """A server CA with a leaf for 127.0.0.1, and a proxy CA with its own leaf."""

    server_ca: KeyPair
    server_leaf: KeyPair
    proxy_ca: KeyPair
    proxy_leaf: KeyPair
    wrong_name_leaf: KeyPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    server_ca, _ = ensure_ca(base / "server", "test server CA")
    proxy_ca, _ = ensure_ca(base / "proxy")
    return Pki(
        server_ca,
        mint_leaf(server_ca, ["127.0.0.1"], base / "server"),
        proxy_ca,
        mint_leaf(proxy_ca, ["127.0.0.1"], base / "proxy"),
        mint_leaf(server_ca, ["ftp.example.test"], base / "server"),
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "root"
    root.mkdir()
    return root, make_file(root, "big.bin", 2 * 1024 * 1024 + 17, seed=5)


@pytest.fixture
def tls_server(
    ftpdiag_sandbox: Callable[..., Any], pki: Pki, files: tuple[Path, str]
) -> Callable[..., Any]:
    """Factory: a pyftpdlib FTPS server (explicit AUTH TLS) over ``files``."""

    def start(leaf: KeyPair | None = None, **attrs: Any) -> Any:
        chosen = leaf or pki.server_leaf
        return ftpdiag_sandbox(
            handler=TLS_FTPHandler,
            root=files[0],
            certfile=str(chosen.cert),
            keyfile=str(chosen.key),
            **attrs,
        )

    return start


def proxy_tls(pki: Pki, verify: bool = True, trust_server: bool = True) -> ProxyTLS:
    return ProxyTLS(
        ClientFacingTLS(pki.proxy_leaf.cert, pki.proxy_leaf.key),
        UpstreamTLS("127.0.0.1", verify, pki.server_ca.cert if trust_server else None),
    )


def ftps_client(address: tuple[str, int], cafile: Path) -> ftplib.FTP_TLS:
    ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(cafile)))
    ftp.connect(*address, timeout=TIMEOUT)
    return ftp


def download(ftp: ftplib.FTP, name: str) -> str:
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {name}", digest.update)
    return digest.hexdigest()


def tls_events(proxy: ProxyHandle, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in proxy.events
        if e["event"] == "tls.established" and all(e.get(k) == v for k, v in match.items())
    ]


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_mirrored_auth_tls_with_prot_p_is_byte_exact(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tls_server: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
    passive: bool,
) -> None:
    """AUTH TLS + PROT P relayed: RETR and STOR under TLS on both sides match byte for byte, and
    the server-side data connection resumes the control connection's TLS session."""
    server = tls_server(tls_control_required=True, tls_data_required=True)
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), client_tls="explicit")
    ftp = ftps_client(proxy.address, pki.proxy_ca.cert)
    ftp.auth()
    ftp.login("diag", "diag")
    ftp.prot_p()
    ftp.set_pasv(passive)
    assert download(ftp, "big.bin") == files[1]
    payload = bytes(range(256)) * 2000
    ftp.storbinary("STOR up.bin", io.BytesIO(payload))
    ftp.quit()
    assert (files[0] / "up.bin").read_bytes() == payload
    proxy.wait_for("session.close")
    assert tls_events(proxy, side="server", channel="control") and tls_events(
        proxy, side="client", channel="control"
    )
    server_data = tls_events(proxy, side="server", channel="data")
    assert [e["resumed"] for e in server_data] == [True, True]
    assert all(e["version"].startswith("TLSv1.") and e["cipher"] for e in server_data)
    assert tls_events(proxy, side="server", channel="control")[0]["peer_subject"] == "CN=127.0.0.1"


def test_plain_client_to_tls_only_server(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tls_server: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
) -> None:
    """--upstream-tls explicit: a plain-FTP client reaches a TLS-only server; the proxy sends
    AUTH TLS, PBSZ 0 and PROT P itself and protects the server-side data connections."""
    server = tls_server(tls_control_required=True, tls_data_required=True)
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), upstream_tls="explicit")
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=TIMEOUT)
    ftp.login("diag", "diag")
    assert download(ftp, "big.bin") == files[1]
    ftp.quit()
    proxy.wait_for("session.close")
    sent = [(e["verb"], e["arg"]) for e in proxy.events if e["event"] == "command"]
    assert sent[:2] == [
        ("USER", "diag"),
        ("PASS", "****"),
    ]  # the proxy's own commands are not client commands
    internal = [
        e["command"]
        for e in proxy.events
        if e["event"] == "reply" and e["command"] in ("AUTH", "PBSZ", "PROT")
    ]
    assert internal == ["AUTH", "PBSZ", "PROT"]
    assert tls_events(proxy, side="server", channel="data")[0]["resumed"]


def test_implicit_ftps_on_both_sides(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    ftpdiag_sandbox: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
) -> None:
    """Implicit FTPS: proxy A speaks TLS from the first byte to clients; proxy B dials A with
    implicit TLS and serves a plain client; the file crosses both byte-exact."""
    plain = ftpdiag_sandbox(root=files[0])
    tls_a = ProxyTLS(
        ClientFacingTLS(pki.proxy_leaf.cert, pki.proxy_leaf.key), UpstreamTLS("127.0.0.1")
    )
    proxy_a = ftpdiag_proxy(plain.address, tls=tls_a, client_tls="implicit", upstream_tls="off")
    tls_b = ProxyTLS(None, UpstreamTLS("127.0.0.1", True, pki.proxy_ca.cert))
    proxy_b = ftpdiag_proxy(proxy_a.address, tls=tls_b, upstream_tls="implicit")
    ftp = ftplib.FTP()
    ftp.connect(*proxy_b.address, timeout=TIMEOUT)
    assert ftp.getwelcome().startswith("220")
    ftp.login("diag", "diag")
    assert download(ftp, "big.bin") == files[1]
    ftp.quit()
    proxy_b.wait_for("session.close")
    assert tls_events(proxy_a, side="client", channel="control")
    assert tls_events(proxy_b, side="server", channel="data")


def test_unknown_server_ca_is_diagnosed(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any], pki: Pki
) -> None:
    """A server certificate from a CA the proxy does not trust: the client gets a clean 421 and
    the log says why and what to do."""
    server = tls_server()
    proxy = ftpdiag_proxy(
        server.address, tls=proxy_tls(pki, trust_server=False), client_tls="explicit"
    )
    ftp = ftps_client(proxy.address, pki.proxy_ca.cert)
    with pytest.raises((ftplib.error_temp, EOFError, ssl.SSLError, OSError)):
        ftp.auth()
        ftp.login("diag", "diag")
    proxy.wait_for("session.close")
    failed = proxy.wait_for("tls.failed", side="server")
    assert "certificate authority" in failed["reason"]
    diagnosis = proxy.wait_for("diagnosis", rule="tls.verify_failed")
    assert diagnosis["remedy"]


def test_wrong_server_name_is_diagnosed(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any], pki: Pki
) -> None:
    """A trusted certificate for another name: refused as 'wrong IP address'."""
    server = tls_server(leaf=pki.wrong_name_leaf)
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), upstream_tls="explicit")
    with pytest.raises((ftplib.error_temp, EOFError, OSError)):
        ftp = ftplib.FTP()
        ftp.connect(*proxy.address, timeout=TIMEOUT)
        ftp.login("diag", "diag")
    proxy.wait_for("session.close")
    assert proxy.wait_for("tls.failed", side="server")["reason"] == "wrong IP address"


def test_insecure_skips_verification(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tls_server: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
) -> None:
    """With verification off, the same untrusted server works."""
    server = tls_server()
    proxy = ftpdiag_proxy(
        server.address,
        tls=proxy_tls(pki, verify=False, trust_server=False),
        upstream_tls="explicit",
    )
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=TIMEOUT)
    ftp.login("diag", "diag")
    assert download(ftp, "big.bin") == files[1]
    ftp.quit()


def test_client_distrusting_the_proxy_ca_is_diagnosed(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any], pki: Pki
) -> None:
    """A client that does not trust the proxy's CA aborts the handshake; the log names it."""
    server = tls_server()
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), client_tls="explicit")
    ftp = ftps_client(proxy.address, pki.server_ca.cert)  # trusts the wrong CA
    with pytest.raises(ssl.SSLCertVerificationError):
        ftp.auth()
    ftp.close()
    failed = proxy.wait_for("tls.failed", side="client")
    assert failed["reason"] == "the peer does not trust the certificate"
    assert proxy.wait_for("diagnosis", rule="tls.client_distrusts_proxy")["remedy"]


def test_data_without_prot_p_refused_by_server_is_explained(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any], pki: Pki
) -> None:
    """A server requiring PROT P answers a plain data transfer with 522; the diagnosis says
    the data channel must be protected."""
    server = tls_server(tls_data_required=True)
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), client_tls="explicit")
    ftp = ftps_client(proxy.address, pki.proxy_ca.cert)
    ftp.auth()
    ftp.login("diag", "diag")
    ftp.voidcmd("PBSZ 0")
    ftp.prot_c()
    with pytest.raises(ftplib.error_perm, match=r"^5(22|50) SSL/TLS required"):
        download(ftp, "big.bin")
    ftp.quit()
    diagnosis = proxy.wait_for("diagnosis", rule="tls.required")
    assert "PROT P" in diagnosis["remedy"] or "PROT P" in diagnosis["explanation"]


def test_passthrough_goes_blind_but_relays(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any], pki: Pki
) -> None:
    """--tls passthrough: the client's TLS reaches the real server; the proxy logs from where
    it is blind and how many bytes it relayed unread."""
    server = tls_server()
    proxy = ftpdiag_proxy(server.address, tls=ProxyTLS(), tls_passthrough=True)
    ftp = ftps_client(proxy.address, pki.server_ca.cert)  # the client sees the server's certificate
    ftp.auth()
    ftp.login("diag", "diag")
    assert ftp.pwd() == "/"
    ftp.quit()
    proxy.wait_for("tls.blind")
    traffic = proxy.wait_for("tls.blind_traffic")
    assert traffic["to_client"] > 0 and traffic["to_server"] > 0
    assert not any(e["event"] == "command" and e["verb"] == "USER" for e in proxy.events)


def test_curl_ftps_through_the_proxy(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tls_server: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """curl with the proxy CA downloads byte-exact, with --ssl-reqd (data protected too) and
    --ftp-ssl-control (control only). Passive mode: this curl's active FTPS hangs even without
    the proxy ("sa_addr inet_ntop() failed"), so active FTPS is covered by ftplib and lftp."""
    server = tls_server(tls_control_required=True)
    proxy = ftpdiag_proxy(server.address, tls=proxy_tls(pki), client_tls="explicit")
    url = f"ftp://diag:diag@127.0.0.1:{proxy.port}/big.bin"
    for extra in (["--ssl-reqd"], ["--ssl-reqd", "--disable-epsv"], ["--ftp-ssl-control"]):
        out = tmp_path / "curl.bin"
        subprocess.run(
            [
                "curl",
                "-sS",
                "--ftp-pasv",
                "--cacert",
                str(pki.proxy_ca.cert),
                *extra,
                "-o",
                str(out),
                url,
            ],
            check=True,
            timeout=30,
        )
        assert hashlib.sha256(out.read_bytes()).hexdigest() == files[1]


def test_auth_refused_when_tls_disabled(
    ftpdiag_proxy: Callable[..., ProxyHandle], tls_server: Callable[..., Any]
) -> None:
    """Without a certificate the proxy answers AUTH TLS with 502, so clients may go on in plain."""
    server = tls_server()
    proxy = ftpdiag_proxy(server.address)
    with socket.create_connection(proxy.address, timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"AUTH TLS\r\n")
        assert reader.readline().startswith(b"502 AUTH TLS is not enabled")
