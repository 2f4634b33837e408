"""End-to-end tests of the data channels' defences (RFC 2577): FTP bounce, data-port theft,
and listeners nobody connects to. 127.0.0.2 plays the third host: it is loopback on Linux."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.testing import ProxyHandle, assert_diagnosed
from tests.conftest import TIMEOUT, ModeFTP, Served
from tests.fake_servers import FakeFTPServer, Fault
from tests.fake_servers._pyftpdlib import FTPHandler

pytestmark = pytest.mark.timeout(60)

Server = Callable[..., FakeFTPServer]
Proxy = Callable[..., ProxyHandle]
Client = Callable[..., ModeFTP]
THIRD_HOST = "127.0.0.2"


class RecordCommands(Fault):
    """Not a fault: records every command line the server receives, to prove what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def control_mixin(self) -> type[FTPHandler]:
        seen = self.seen

        class _Record(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                seen.append(cmd)
                super().pre_process_command(line, cmd, arg)

        return _Record


def read_all(conn: socket.socket) -> bytes:
    """Read a data connection to its end."""
    conn.settimeout(TIMEOUT)
    return b"".join(iter(lambda: conn.recv(1 << 16), b""))


@pytest.mark.parametrize(
    ("command", "requested"),
    [("PORT 127,0,0,2,200,10", "127.0.0.2:51210"), ("EPRT |1|127.0.0.2|51210|", "127.0.0.2:51210")],
)
def test_bounce_refused(
    command: str,
    requested: str,
    fake_server: Server,
    ftpdiag_proxy: Proxy,
    ftp_client: Client,
    served: Served,
) -> None:
    """PORT/EPRT naming a host other than the client gets 500 from the proxy, never reaches
    the server, is diagnosed security.bounce, and the session goes on."""
    recorder = RecordCommands()
    proxy = ftpdiag_proxy(fake_server(recorder).address)
    ftp = ftp_client(proxy.address, "PASV")
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.sendcmd(command)
    verb = command.split()[0]
    assert_diagnosed(
        proxy, "security.bounce", 500, verb=verb, requested=requested, client="127.0.0.1"
    )
    out: list[bytes] = []
    assert ftp.retrbinary("RETR small.bin", out.append).startswith("226")
    assert hashlib.sha256(b"".join(out)).hexdigest() == served.sha["small.bin"]
    assert "RETR" in recorder.seen
    assert "PORT" not in recorder.seen and "EPRT" not in recorder.seen


@pytest.mark.parametrize("verb", ["PASV", "EPSV"])
def test_data_port_theft_refused(
    verb: str, fake_server: Server, ftpdiag_proxy: Proxy, ftp_client: Client, served: Served
) -> None:
    """A connection to the proxy's passive data port from another host is refused and diagnosed
    security.data_theft, and the legitimate client still completes its transfer."""
    proxy = ftpdiag_proxy(fake_server().address)
    ftp = ftp_client(proxy.address, verb)
    ftp.voidcmd("TYPE I")
    host, port = ftp.makepasv()
    with socket.create_connection(
        (host, port), timeout=TIMEOUT, source_address=(THIRD_HOST, 0)
    ) as thief:
        stolen = b""
        with contextlib.suppress(ConnectionResetError):
            stolen = read_all(thief)
        assert stolen == b""
        thief_port = thief.getsockname()[1]
    proxy.wait_for("security.data_theft_refused")
    assert_diagnosed(
        proxy,
        "security.data_theft",
        peer=f"{THIRD_HOST}:{thief_port}",
        expected="127.0.0.1",
        side="client",
    )
    with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
        assert ftp.sendcmd("RETR big.bin")[:1] == "1"
        data = read_all(conn)
    assert ftp.voidresp().startswith("226")
    assert hashlib.sha256(data).hexdigest() == served.sha["big.bin"]
    assert proxy.wait_for("transfer.end")["outcome"] == 226


@pytest.fixture
def impatient_proxy(fake_server: Server, ftpdiag_proxy: Proxy) -> ProxyHandle:
    """A proxy whose data listeners wait only 0.5 s for a connection."""
    return ftpdiag_proxy(fake_server().address, data=DataTimeouts(connect=0.5))


def never_connected(proxy: ProxyHandle) -> dict[str, Any]:
    proxy.wait_for("data.failed", side="client")
    return assert_diagnosed(
        proxy,
        "data.client_never_connected",
        425,
        side="client",
        kind="timeout",
        client_mode="passive",
    )


def test_client_never_connects_before_retr(
    impatient_proxy: ProxyHandle, ftp_client: Client
) -> None:
    """PASV then RETR without ever connecting: the listener gives up after the timeout, the
    client gets a final error reply (no hang) and the diagnosis names the client side."""
    ftp = ftp_client(impatient_proxy.address, "PASV")
    ftp.voidcmd("TYPE I")
    ftp.makepasv()
    started = time.monotonic()
    assert ftp.sendcmd("RETR big.bin")[:1] == "1"
    with pytest.raises(ftplib.error_temp, match=r"^4"):
        ftp.voidresp()
    assert time.monotonic() - started < 5.0
    never_connected(impatient_proxy)
    end = impatient_proxy.wait_for("transfer.end")
    assert end["client_end"] == "never" and end["outcome"] // 100 == 4
    assert ftp.voidcmd("NOOP").startswith("200")


def test_client_never_connects_then_retr(impatient_proxy: ProxyHandle, ftp_client: Client) -> None:
    """PASV, then RETR only after the listener timed out: the proxy answers 425 itself at once
    instead of letting the server wait for a data connection that cannot come."""
    ftp = ftp_client(impatient_proxy.address, "PASV")
    ftp.makepasv()
    never_connected(impatient_proxy)
    started = time.monotonic()
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.sendcmd("RETR big.bin")
    assert time.monotonic() - started < 1.0
    assert ftp.voidcmd("NOOP").startswith("200")
    assert len(ftp.nlst()) == 3
