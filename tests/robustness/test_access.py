"""Access control of the ``ftpdiag proxy`` command: loopback by default, ``--allow-client``,
``--max-sessions``, ``--max-sessions-per-client``, the ``proxy.exposed`` warning, and two
data-channel defences that tests/test_data_security.py does not cover (bounce spellings via
the CLI inside an allowed network; theft on the proxy's server-side listener).

127.0.0.2 plays the second host (it is loopback on Linux). Nothing connects anywhere but
127.0.0.x.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.cli import DEFAULT_LISTEN, build_parser
from tests.fake_servers import FakeFTPServer
from tests.robustness.conftest import (
    HEALTHY_NAME,
    HEALTHY_SHA,
    TIMEOUT,
    ProxyProcess,
    RawClient,
    Rig,
    ScriptedUpstream,
    closed_port,
    observe,
    observed_if_failing,
    own_sockets,
    sha256,
)

pytestmark = pytest.mark.timeout(60)

OTHER = "127.0.0.2"
Cli = Callable[..., ProxyProcess]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeFTPServer]:
    root = tmp_path / "root"
    root.mkdir()
    with FakeFTPServer(root=root) as fake:
        yield fake


def upstream_arg(server: FakeFTPServer | ScriptedUpstream) -> str:
    return f"127.0.0.1:{server.address[1]}"


def refused(address: tuple[str, int], source: str = "127.0.0.1") -> tuple[bytes, str]:
    """Connect from ``source``; return the first line and how the connection ended."""
    client = RawClient(address, source=source)
    try:
        outcome = client.outcome()
        return b"".join(outcome.lines), outcome.end
    finally:
        client.close()


def greeted(address: tuple[str, int], source: str = "127.0.0.1") -> RawClient:
    """Connect from ``source`` and read a 220 greeting."""
    client = RawClient(address, source=source)
    reply = client.reply()
    assert reply.startswith(b"220"), reply
    return client


def test_listens_on_loopback_by_default(cli: Cli, server: FakeFTPServer) -> None:
    """Without --listen the proxy binds 127.0.0.1 only (and says nothing about exposure)."""
    assert build_parser().parse_args(["proxy"]).listen == ("127.0.0.1", 2121)
    assert DEFAULT_LISTEN == "127.0.0.1:2121"
    with socket.socket() as probe:
        probe.settimeout(TIMEOUT)
        try:
            probe.bind(("127.0.0.1", 2121))
        except OSError:
            return  # something else owns 2121 here: the parser check above must do
    proxy = cli("--upstream", upstream_arg(server), listen=None)
    assert proxy.listen == ("127.0.0.1", 2121)
    listening = [s.local for s in own_sockets(proxy.proc.pid) if s.listening]
    assert listening == [("127.0.0.1", 2121)], listening
    client = greeted(proxy.address)
    client.close()
    assert not proxy.find("proxy.exposed")


def test_allow_client_refuses_other_sources(cli: Cli, server: FakeFTPServer) -> None:
    """--allow-client 127.0.0.2/32: 127.0.0.1 gets 421 and an access.refused record, no
    session; 127.0.0.2 is served."""
    proxy = cli("--upstream", upstream_arg(server), "--allow-client", f"{OTHER}/32")
    line, end = refused(proxy.address, source="127.0.0.1")
    assert line.startswith(b"421 ") and b"not allowed" in line and end == "closed", line
    record = proxy.wait_for("access.refused")
    assert record["client"].startswith("127.0.0.1:") and "--allow-client" in record["reason"]
    assert not proxy.find("session.open", client=record["client"])
    client = greeted(proxy.address, source=OTHER)
    assert client.cmd("USER user").startswith(b"331")
    assert client.cmd("PASS secret").startswith(b"230")
    client.close()
    observe("Access control", "`--allow-client 127.0.0.2/32`, client 127.0.0.1", "connect",
            line.decode().strip() + ", connection closed", f"`access.refused` ({record['reason']})")


def test_max_sessions(cli: Cli, server: FakeFTPServer) -> None:
    """--max-sessions 2: the third concurrent session gets 421; a freed slot is reusable."""
    proxy = cli("--upstream", upstream_arg(server), "--max-sessions", "2")
    first, second = greeted(proxy.address), greeted(proxy.address, source=OTHER)
    try:
        line, end = refused(proxy.address)
        assert line.startswith(b"421 ") and b"too many sessions" in line and end == "closed"
        assert "--max-sessions" in proxy.wait_for("access.refused")["reason"]
        assert first.cmd("QUIT").startswith(b"221")
        proxy.wait_for("session.close", reason="server closed")
        third = greeted(proxy.address)
        third.close()
    finally:
        first.close()
        second.close()
    observe("Access control", "`--max-sessions 2`, third session", "connect",
            line.decode().strip() + ", connection closed", "`access.refused`")


def test_max_sessions_per_client(cli: Cli, server: FakeFTPServer) -> None:
    """--max-sessions-per-client 1: a second session from 127.0.0.1 gets 421, one from
    127.0.0.2 is served, and 127.0.0.1 may come back once its session ended."""
    proxy = cli("--upstream", upstream_arg(server), "--max-sessions-per-client", "1")
    first = greeted(proxy.address)
    try:
        line, end = refused(proxy.address)
        assert line.startswith(b"421 ") and b"too many sessions from 127.0.0.1" in line
        assert end == "closed"
        assert "--max-sessions-per-client" in proxy.wait_for("access.refused")["reason"]
        other = greeted(proxy.address, source=OTHER)
        other.close()
        assert first.cmd("QUIT").startswith(b"221")
        proxy.wait_for("session.close", reason="server closed")
        again = greeted(proxy.address)
        again.close()
    finally:
        first.close()
    observe("Access control", "`--max-sessions-per-client 1`, second session", "connect",
            line.decode().strip() + ", connection closed", "`access.refused`")


def test_exposed_listener_is_reported(cli: Cli) -> None:
    """--listen 0.0.0.0:0 without --allow-client logs proxy.exposed; with it, it does not."""
    dead = f"127.0.0.1:{closed_port()}"
    proxy = cli("--upstream", dead, listen="0.0.0.0:0")
    exposed = proxy.wait_for("proxy.exposed")
    assert exposed["listen"] == f"0.0.0.0:{proxy.listen[1]}" and "--allow-client" in exposed["hint"]
    line, end = refused(proxy.address)  # reached on 127.0.0.1 only
    assert line.startswith(b"421 ftpdiag: cannot reach the server") and end == "closed"
    guarded = cli("--upstream", dead, "--allow-client", "127.0.0.0/8", listen="0.0.0.0:0",
                  name="guarded")
    guarded.wait_for("proxy.listen")
    assert not guarded.find("proxy.exposed")
    observe("Access control", "`--listen 0.0.0.0:0` without `--allow-client`", "start",
            "—", f"`proxy.exposed` (level {exposed['level']})")


EXPOSED_IS_INFO = (
    "ftpdiag/logconfig.py level_of(): every non-diagnosis event is logged at 'info', "
    "including proxy.exposed, so the security warning has level 'info' and `ftpdiag proxy "
    "-q` (warnings and errors only) prints nothing at all about listening on 0.0.0.0 "
    "without --allow-client; proxy.exposed should be a 'warning'"
)


def test_exposed_listener_is_a_warning(cli: Cli) -> None:
    """The proxy.exposed record is a warning, so it shows on a -q console too."""
    proxy = cli("--upstream", f"127.0.0.1:{closed_port()}", "-q", listen="0.0.0.0:0")
    with observed_if_failing(
        "Access control", "`--listen 0.0.0.0:0 -q` without `--allow-client`", "start", "—",
        "`proxy.exposed` at level info: nothing on the `-q` console",
    ):
        assert proxy.wait_for("proxy.exposed")["level"] == "warning"
        assert "proxy.exposed" in proxy.stderr()


@pytest.mark.parametrize(
    "command",
    ["EPRT |2|::ffff:127.0.0.2|2000|", "PORT 127,000,000,002,7,208", "PORT 127 ,0, 0,2,7,208"],
    ids=["eprt-v4-mapped", "port-zero-padded", "port-spaced"],
)
def test_bounce_spellings_refused_inside_allowed_network(
    command: str, cli: Cli, upstream: ScriptedUpstream
) -> None:
    """Allowing 127.0.0.0/8 as clients does not allow bouncing to another allowed host: other
    spellings of 127.0.0.2 in PORT/EPRT get 500 and never reach the server."""
    proxy = cli("--upstream", upstream_arg(upstream), "--allow-client", "127.0.0.0/8")
    client = RawClient(proxy.address)
    try:
        client.login()
        reply = client.cmd(command)
        assert reply.startswith(b"500 "), reply
        record = proxy.wait_for("security.bounce_refused")
        # (an IPv4-mapped host is logged as "::ffff:7f00:2:2000": unbracketed, but refused)
        assert record["requested"].endswith(":2000"), record
        assert record["client"] == "127.0.0.1"
        assert not [ln for ln in upstream.received if ln[:4] in (b"PORT", b"EPRT")]
        assert client.cmd("NOOP").startswith(b"200")
    finally:
        client.close()
    observe("Access control", f"`{command}` from 127.0.0.1 (`--allow-client 127.0.0.0/8`)",
            "logged in", "500, never forwarded, session goes on",
            f"`security.bounce_refused` requested `{record['requested']}`; diagnosis "
            "`security.bounce`")


def test_theft_of_the_server_side_listener_refused(
    upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """With --upstream-mode active the proxy listens for the server: a connection from
    another host to that listener is refused and diagnosed, and the real server's
    connection still carries a verified transfer."""
    rig: Rig = make_rig(upstream.address, upstream_mode="active")
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*rig.address, timeout=TIMEOUT)
    try:
        ftp.login("victim", "victim-pw")
        ftp.voidcmd("TYPE I")
        host, port = ftp.makepasv()
        listen = rig.handle.wait_for("data.listen", side="server")["address"]
        lhost, lport = listen.rsplit(":", 1)
        with socket.create_connection(
            (lhost, int(lport)), timeout=TIMEOUT, source_address=(OTHER, 0)
        ) as thief, contextlib.suppress(ConnectionResetError, TimeoutError):
            assert thief.recv(1) == b""
        theft = rig.handle.wait_for("security.data_theft_refused", side="server")
        assert theft["peer"].startswith(f"{OTHER}:") and theft["expected"] == "127.0.0.1"
        with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
            assert ftp.sendcmd(f"RETR {HEALTHY_NAME}")[:1] == "1"
            data = io.BytesIO()
            while chunk := conn.recv(1 << 16):
                data.write(chunk)
        assert ftp.voidresp().startswith("226")
        assert sha256(data.getvalue()) == HEALTHY_SHA
        assert [d for d in rig.handle.diagnoses("security.data_theft")]
    finally:
        ftp.close()
    observe("Access control", "connection from 127.0.0.2 to the proxy's server-side (PORT) "
            "listener", "upstream-mode active", "— (thief closed at once; the real transfer "
            "completed)", "`security.data_theft_refused` side server; diagnosis "
            "`security.data_theft`")
