"""Upstream faults through the in-process proxy: DNS failure (injected resolver), connect
timeout (a loopback listener whose accept queue is full), and a server that never greets."""

from __future__ import annotations

import ftplib
import socket
from collections.abc import Iterator

import pytest
from twisted.internet import defer, error

from ftpdiag.testing import ProxyHandle, assert_diagnosed
from tests.fake_servers import FakeFTPServer, NoGreeting


def failing_resolver(host: str) -> defer.Deferred[str]:
    """Stands in for DNS: no test may perform a real lookup."""
    return defer.fail(error.DNSLookupError(f"{host}: Name or service not known"))


def test_dns_failure_gives_421_and_a_diagnosis(ftpdiag_proxy) -> None:  # type: ignore[no-untyped-def]
    """An unresolvable upstream name: 421 to the client, upstream.dns with a remedy."""
    proxy: ProxyHandle = ftpdiag_proxy(("ftp.invalid", 21), resolver=failing_resolver)
    with pytest.raises(
        ftplib.error_temp, match=r"421 ftpdiag: cannot reach the server ftp\.invalid:21"
    ):
        ftplib.FTP().connect(*proxy.address, timeout=10)
    proxy.wait_for("session.close")
    diagnosis = assert_diagnosed(proxy, "upstream.dns", 421)
    assert "DNS" in diagnosis["remedy"] or "resolv" in diagnosis["remedy"]


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A loopback port whose listen queue is full, so new SYNs go unanswered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def test_connect_timeout_gives_421_and_a_diagnosis(ftpdiag_proxy, unresponsive_port: int) -> None:  # type: ignore[no-untyped-def]
    """An upstream that never completes the handshake: 421 after the connect timeout."""
    proxy: ProxyHandle = ftpdiag_proxy(("127.0.0.1", unresponsive_port), connect_timeout=0.5)
    with pytest.raises(ftplib.error_temp, match=r"421 ftpdiag: cannot reach .*timed out"):
        ftplib.FTP().connect(*proxy.address, timeout=10)
    proxy.wait_for("session.close")
    assert_diagnosed(proxy, "upstream.timeout", 421)


def test_server_without_greeting_times_out(ftpdiag_proxy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A server that accepts but never greets: 421 after the greeting timeout, greeting.missing."""
    with FakeFTPServer(root=tmp_path, faults=[NoGreeting()]) as server:
        proxy: ProxyHandle = ftpdiag_proxy(server.address, greeting_timeout=0.5)
        with pytest.raises(ftplib.error_temp, match="421 ftpdiag: the server sent no greeting"):
            ftplib.FTP().connect(*proxy.address, timeout=10)
        proxy.wait_for("session.close")
        assert_diagnosed(proxy, "greeting.missing")


def test_proxy_survives_a_failed_session(ftpdiag_proxy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After one session failed upstream, the same proxy still serves a healthy one."""
    with FakeFTPServer(root=tmp_path) as server:
        proxy: ProxyHandle = ftpdiag_proxy(server.address)
        raw = socket.create_connection(proxy.address, timeout=5)
        raw.sendall(b"\x00" * 20000)  # garbage over the line limit, then vanish
        raw.close()
        ftp = ftplib.FTP()
        ftp.connect(*proxy.address, timeout=10)
        ftp.login(server.user, server.password)
        assert ftp.pwd() == "/"
        ftp.quit()
