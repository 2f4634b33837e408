"""Direct tests (plain ftplib / raw sockets, no proxy) of the fake FTP servers.

Each fault is checked for the exact behaviour the end-to-end tests will rely
on: which reply code arrives, how many bytes get through, whether the peer
sees FIN or RST.  Every socket has a bounded timeout so nothing can hang.
"""

from __future__ import annotations

import ftplib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_servers import (
    BANNER,
    AbortTransferAfter,
    Delay,
    DropControlDuringTransfer,
    FakeFTPServer,
    Fault,
    GreetingDelay,
    GreetingReply,
    IdleTimeout,
    MalformedPasv,
    MultilineMismatch,
    NoCompletionReply,
    NoGreeting,
    Reply,
    ResetDataAfter,
    SlowData,
    Unsolicited,
    make_file,
    sha256_of,
)
from tests.fake_servers._pyftpdlib import DTPHandler, FTPHandler

pytestmark = pytest.mark.timeout(20)

TIMEOUT = 5.0
Serve = Callable[..., FakeFTPServer]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Served directory, separate from scratch space used by the tests."""
    served = tmp_path / "root"
    served.mkdir()
    return served


@pytest.fixture
def serve(root: Path) -> Iterator[Serve]:
    """Factory starting servers on ``root`` and always stopping them."""
    servers: list[FakeFTPServer] = []

    def _serve(*faults: Fault, **kwargs: Any) -> FakeFTPServer:
        server = FakeFTPServer(root, faults=faults, **kwargs).start()
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


def connect(server: FakeFTPServer, *, login: bool = True, timeout: float = TIMEOUT) -> ftplib.FTP:
    """An ftplib client (optionally logged in as the full-permission user)."""
    ftp = ftplib.FTP()
    try:
        ftp.connect(*server.address, timeout=timeout)
        if login:
            ftp.login(server.user, server.password)
    except BaseException:
        ftp.close()  # a refused greeting/login must not leak the socket
        raise
    return ftp


def raw(server: FakeFTPServer, timeout: float = TIMEOUT) -> tuple[socket.socket, Any]:
    """A raw control socket plus a line reader, for byte-level assertions."""
    sock = socket.create_connection(server.address, timeout=timeout)
    return sock, sock.makefile("rb")


def readline(reader: Any) -> str:
    """One reply line without its CRLF ('' on EOF)."""
    line: bytes = reader.readline()
    return line.decode().rstrip("\r\n")


def open_fds() -> set[str]:
    """This process's open file descriptors (Linux)."""
    return set(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------
# Lifecycle and basics
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_start_stop_leaves_no_threads_fds_or_listener(root: Path) -> None:
    """A served session followed by stop() leaves no thread, fd or listener."""
    make_file(root, "f.bin", 50_000)
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    server = FakeFTPServer(root).start()
    port = server.address[1]
    assert server.running
    ftp = connect(server)
    ftp.retrbinary("RETR f.bin", lambda _: None)
    # A client still connected at stop() time must not keep anything alive.
    lingering = connect(server)
    ftp.quit()
    server.stop()
    server.stop()  # idempotent
    lingering.close()
    assert not server.running
    assert set(threading.enumerate()) == threads_before
    assert open_fds() == fds_before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_context_manager_and_banner(root: Path) -> None:
    """The context manager serves with the fixed banner and stops on exit."""
    with FakeFTPServer(root) as server:
        ftp = connect(server, login=False)
        assert ftp.welcome == f"220 {BANNER}"
        ftp.quit()
    assert not server.running


def test_roundtrip_and_anonymous_is_read_only(root: Path, serve: Serve) -> None:
    """The user can download and upload byte-exactly; anonymous cannot write."""
    digest = make_file(root, "data.bin", 300_000, seed=7)
    server = serve()
    ftp = connect(server)
    received = bytearray()
    ftp.retrbinary("RETR data.bin", received.extend)
    assert len(received) == 300_000
    source = Path(tempfile.mkdtemp()) / "up.bin"
    up_digest = make_file(source.parent, source.name, 123_457, seed=8)
    with source.open("rb") as fh:
        ftp.storbinary("STOR up.bin", fh)
    assert sha256_of(root / "up.bin") == up_digest
    assert sha256_of(root / "data.bin") == digest
    ftp.quit()

    anon = connect(server, login=False)
    anon.login()  # anonymous
    with pytest.raises(ftplib.error_perm, match=r"^550"), source.open("rb") as fh:
        anon.storbinary("STOR nope.bin", fh)
    anon.quit()


def test_anonymous_can_be_disabled(serve: Serve) -> None:
    """With anonymous=False the anonymous login is refused with 530."""
    server = serve(anonymous=False)
    ftp = connect(server, login=False)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.login()
    ftp.close()


def test_pyftpdlib_classes_are_not_mutated(serve: Serve) -> None:
    """Starting a configured, faulty server leaves FTPHandler/DTPHandler untouched."""
    before = (
        FTPHandler.authorizer,
        FTPHandler.masquerade_address,
        FTPHandler.passive_ports,
        FTPHandler.timeout,
        FTPHandler.banner,
        FTPHandler.dtp_handler,
        FTPHandler.auth_failed_timeout,
        DTPHandler.use_sendfile,
    )
    server = serve(IdleTimeout(9), SlowData(10_000), masquerade_address="127.0.0.2")
    assert server.handler_class is not None
    assert server.handler_class.timeout == 9
    assert server.handler_class.masquerade_address == "127.0.0.2"
    after = (
        FTPHandler.authorizer,
        FTPHandler.masquerade_address,
        FTPHandler.passive_ports,
        FTPHandler.timeout,
        FTPHandler.banner,
        FTPHandler.dtp_handler,
        FTPHandler.auth_failed_timeout,
        DTPHandler.use_sendfile,
    )
    assert after == before


def test_rejects_non_loopback_addresses(root: Path) -> None:
    """Listening on or advertising a non-loopback address is refused."""
    with pytest.raises(ValueError, match=r"loopback"):
        FakeFTPServer(root, host="0.0.0.0").start()
    with pytest.raises(ValueError, match=r"loopback"):
        FakeFTPServer(root, masquerade_address="192.0.2.1").start()


def test_fault_arguments_are_validated() -> None:
    """Nonsensical fault parameters fail at construction, not mid-test."""
    with pytest.raises(ValueError):
        Reply("PASV", code=42)
    with pytest.raises(ValueError):
        Reply("PASV", text="two\r\nlines")
    with pytest.raises(ValueError):
        AbortTransferAfter(-1)
    with pytest.raises(ValueError):
        SlowData(0)
    with pytest.raises(ValueError):
        IdleTimeout(0)
    with pytest.raises(ValueError):
        MultilineMismatch(first_code=214, last_code=214)


def test_wrong_password_is_answered_quickly(serve: Serve) -> None:
    """auth_failed_timeout=0 removes pyftpdlib's 3 s delay before a 530."""
    server = serve()
    ftp = connect(server, login=False)
    started = time.monotonic()
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.login(server.user, "wrong")
    assert time.monotonic() - started < 1.0
    ftp.close()


# ---------------------------------------------------------------------------
# Control-channel faults
# ---------------------------------------------------------------------------


def test_reply_overrides_command_then_behaves(serve: Serve) -> None:
    """Reply(times=1) fakes one PASV answer, after which PASV works again."""
    server = serve(Reply("PASV", code=500, text="PASV is broken today", times=1))
    ftp = connect(server)
    with pytest.raises(ftplib.error_perm, match=r"^500 PASV is broken today$"):
        ftp.sendcmd("PASV")
    assert ftp.sendcmd("PASV").startswith("227 ")
    ftp.quit()


def test_reply_budget_is_per_server(serve: Serve) -> None:
    """The times budget is shared across connections to the same server."""
    server = serve(Reply("USER", code=421, text="Busy, try again", times=1, close=True))
    first = connect(server, login=False)
    with pytest.raises(ftplib.error_temp, match=r"^421 Busy, try again$"):
        first.login(server.user, server.password)
    with pytest.raises(EOFError):
        first.getline()  # server closed after the 421 (reading only: no RST race)
    first.close()
    second = connect(server)  # budget used up: logs in normally
    second.quit()


def test_delay_postpones_reply_and_keeps_order(serve: Serve) -> None:
    """Delay holds PASS's reply; a pipelined NOOP is answered after it."""
    server = serve(Delay("PASS", seconds=0.4))
    sock, reader = raw(server)
    with sock, reader:
        assert readline(reader).startswith("220 ")
        sock.sendall(b"USER user\r\n")
        assert readline(reader).startswith("331 ")
        started = time.monotonic()
        sock.sendall(b"PASS secret\r\nNOOP\r\n")
        assert readline(reader).startswith("230 ")
        elapsed = time.monotonic() - started
        assert readline(reader).startswith("200 ")
    assert 0.35 <= elapsed < 2.0


def test_no_greeting_times_out_and_stops_cleanly(serve: Serve) -> None:
    """NoGreeting accepts but stays silent; stop() then closes the socket (EOF)."""
    server = serve(NoGreeting())
    sock, reader = raw(server, timeout=0.3)
    with sock, reader:
        sock.sendall(b"USER user\r\n")
        with pytest.raises(TimeoutError):
            reader.readline()
        with pytest.raises(TimeoutError):
            connect(server, login=False, timeout=0.3)
        sock.settimeout(TIMEOUT)
        server.stop()
        assert sock.recv(100) == b""


def test_greeting_delay_sends_120_then_220(serve: Serve) -> None:
    """GreetingDelay sends 120 at once, 220 later, then answers early commands."""
    server = serve(GreetingDelay(seconds=0.3))
    sock, reader = raw(server)
    with sock, reader:
        started = time.monotonic()
        assert readline(reader).startswith("120 ")
        assert time.monotonic() - started < 0.25
        sock.sendall(b"USER user\r\n")  # sent before the 220: must wait for it
        assert readline(reader) == f"220 {BANNER}"
        assert time.monotonic() - started >= 0.25
        assert readline(reader).startswith("331 ")


def test_greeting_delay_desynchronises_ftplib(serve: Serve) -> None:
    """ftplib takes the 120 as its welcome and the 220 as USER's reply."""
    server = serve(GreetingDelay(seconds=0.1))
    ftp = connect(server, login=False)
    assert (ftp.welcome or "").startswith("120 ")
    assert ftp.sendcmd("USER user").startswith("220 ")
    ftp.close()


def test_greeting_reply_refuses_and_closes(serve: Serve) -> None:
    """GreetingReply sends 421 instead of 220 and closes the connection."""
    server = serve(GreetingReply())
    with pytest.raises(ftplib.error_temp, match=r"^421 Too many connections$"):
        connect(server, login=False)
    sock, reader = raw(server)
    with sock, reader:
        assert readline(reader) == "421 Too many connections"
        assert reader.readline() == b""


def test_malformed_pasv(serve: Serve) -> None:
    """MalformedPasv answers PASV with an unparsable 227 line."""
    server = serve(MalformedPasv())
    ftp = connect(server)
    assert ftp.sendcmd("PASV") == "227 Entering Passive Mode (garbage)"
    with pytest.raises(ftplib.error_proto):
        ftp.makepasv()
    ftp.quit()


def test_masquerade_advertises_127_0_0_2(root: Path, serve: Serve) -> None:
    """masquerade_address puts 127.0.0.2 in 227, where nothing listens."""
    make_file(root, "f.bin", 10_000)
    server = serve(masquerade_address="127.0.0.2")
    ftp = connect(server)
    assert "(127,0,0,2," in ftp.sendcmd("PASV")
    # ftplib ignores the PASV address by default and so silently works...
    ftp.retrbinary("RETR f.bin", lambda _: None)
    # ...but a client trusting the reply hits the broken NAT address.
    ftp.trust_server_pasv_ipv4_address = True
    with pytest.raises(ConnectionRefusedError):
        ftp.retrbinary("RETR f.bin", lambda _: None)
    # EPSV carries no address, so it is unaffected.
    assert ftp.sendcmd("EPSV").startswith("229 ")
    ftp.close()


def test_passive_ports_are_honoured(serve: Serve) -> None:
    """passive_ports restricts the port advertised in 227."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = serve(passive_ports=range(port, port + 1))
    ftp = connect(server)
    _host, advertised = ftplib.parse227(ftp.sendcmd("PASV"))
    assert advertised == port
    ftp.quit()


def test_idle_timeout_sends_421(serve: Serve) -> None:
    """IdleTimeout makes pyftpdlib send 421 and close after idling."""
    server = serve(IdleTimeout(0.3))
    ftp = connect(server)
    started = time.monotonic()
    assert ftp.getline() == "421 Control connection timed out."
    assert time.monotonic() - started >= 0.2
    with pytest.raises(EOFError):
        ftp.getline()
    ftp.close()


def test_unsolicited_after_command(serve: Serve) -> None:
    """Unsolicited adds an extra line after NOOP, shifting later replies."""
    server = serve(Unsolicited(text="200 Surprise", after_command="NOOP"))
    ftp = connect(server)
    assert ftp.sendcmd("NOOP").startswith("200 I successfully")
    assert ftp.sendcmd("SYST") == "200 Surprise"  # the client is now one behind
    assert ftp.getline() == "215 UNIX Type: L8"
    ftp.quit()


def test_unsolicited_after_greeting(serve: Serve) -> None:
    """Unsolicited(after_command=None) follows the 220 greeting."""
    server = serve(Unsolicited(text="250 Hello again", after_command=None))
    sock, reader = raw(server)
    with sock, reader:
        assert readline(reader) == f"220 {BANNER}"
        assert readline(reader) == "250 Hello again"


def test_multiline_mismatch(serve: Serve) -> None:
    """MultilineMismatch ends a 214- reply with 211; ftplib keeps waiting."""
    server = serve(MultilineMismatch())
    sock, reader = raw(server)
    with sock, reader:
        assert readline(reader).startswith("220 ")
        sock.sendall(b"HELP\r\n")
        lines = [readline(reader) for _ in range(3)]
    assert lines[0].startswith("214-")
    assert lines[1].startswith(" ")
    assert lines[2].startswith("211 ")

    ftp = connect(server, login=False, timeout=0.4)
    with pytest.raises(TimeoutError):
        ftp.sendcmd("HELP")
    ftp.close()


def test_max_cons_per_ip(serve: Serve) -> None:
    """max_cons_per_ip=1 makes pyftpdlib greet a second connection with 421."""
    server = serve(max_cons_per_ip=1)
    first = connect(server)
    with pytest.raises(ftplib.error_temp, match=r"^421 Too many connections from the same IP"):
        connect(server, login=False)
    first.quit()


# ---------------------------------------------------------------------------
# Data-channel faults
# ---------------------------------------------------------------------------


def test_abort_transfer_after(root: Path, serve: Serve) -> None:
    """AbortTransferAfter delivers exactly N bytes, then FIN and 426."""
    make_file(root, "f.bin", 200_000, seed=1)
    expected = (root / "f.bin").read_bytes()[:10_000]
    server = serve(AbortTransferAfter(10_000))
    ftp = connect(server)
    received = bytearray()
    with pytest.raises(ftplib.error_temp, match=r"^426 Connection closed; transfer aborted.$"):
        ftp.retrbinary("RETR f.bin", received.extend)
    assert bytes(received) == expected
    assert ftp.voidcmd("NOOP").startswith("200 ")  # control channel still in sync
    ftp.quit()


def test_reset_data_after_on_retr(root: Path, serve: Serve) -> None:
    """ResetDataAfter on RETR: N bytes, then ConnectionResetError, then 426."""
    make_file(root, "f.bin", 500_000, seed=2)
    server = serve(ResetDataAfter(20_000))
    ftp = connect(server)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR f.bin")
    received = bytearray()
    with conn, pytest.raises(ConnectionResetError):
        while chunk := conn.recv(8192):
            received.extend(chunk)
    assert len(received) == 20_000
    with pytest.raises(ftplib.error_temp, match=r"^426 Connection reset"):
        ftp.voidresp()
    ftp.quit()


def test_reset_data_after_on_stor(root: Path, serve: Serve) -> None:
    """ResetDataAfter on STOR keeps N bytes server-side and resets the uploader."""
    server = serve(ResetDataAfter(65_536))
    ftp = connect(server)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR up.bin")
    block = os.urandom(64 * 1024)
    with conn, pytest.raises((ConnectionResetError, BrokenPipeError)):
        for _ in range(1024):  # 64 MiB at most: far beyond any socket buffer
            conn.sendall(block)
    with pytest.raises(ftplib.error_temp, match=r"^426 Connection reset"):
        ftp.voidresp()
    assert (root / "up.bin").stat().st_size == 65_536
    assert (root / "up.bin").read_bytes() == block
    ftp.quit()


def test_drop_control_during_transfer(root: Path, serve: Serve) -> None:
    """DropControlDuringTransfer: N bytes then EOF on data, EOF on control."""
    make_file(root, "f.bin", 200_000, seed=3)
    server = serve(DropControlDuringTransfer(after_bytes=30_000))
    ftp = connect(server)
    received = bytearray()
    with pytest.raises(EOFError):
        ftp.retrbinary("RETR f.bin", received.extend)
    assert len(received) == 30_000
    ftp.close()


def test_no_completion_reply(root: Path, serve: Serve) -> None:
    """NoCompletionReply sends all data but no 226; the next reply is NOOP's."""
    digest = make_file(root, "f.bin", 100_000, seed=4)
    server = serve(NoCompletionReply())
    ftp = connect(server)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR f.bin")
    received = bytearray()
    with conn:
        while chunk := conn.recv(65536):
            received.extend(chunk)
    assert len(received) == 100_000
    assert sha256_of(root / "f.bin") == digest
    assert ftp.sendcmd("NOOP").startswith("200 ")  # not a late 226
    ftp.quit()


def test_no_completion_reply_can_target_commands(root: Path, serve: Serve) -> None:
    """NoCompletionReply(commands=("RETR",)) leaves listings alone."""
    make_file(root, "f.bin", 1_000)
    server = serve(NoCompletionReply(commands=("RETR",)))
    ftp = connect(server)
    assert ftp.nlst() == ["f.bin"]  # LIST/NLST still get their 226
    ftp.quit()


def test_slow_data_throttles(root: Path, serve: Serve) -> None:
    """SlowData stretches a transfer of several seconds' worth of rate."""
    make_file(root, "f.bin", 60_000)
    server = serve(SlowData(bytes_per_second=20_000))
    ftp = connect(server)
    started = time.monotonic()
    received = bytearray()
    ftp.retrbinary("RETR f.bin", received.extend)
    elapsed = time.monotonic() - started
    assert len(received) == 60_000
    assert 0.8 <= elapsed < 8.0
    ftp.quit()


def test_abor_during_slow_transfer_gets_426_then_226(root: Path, serve: Serve) -> None:
    """pyftpdlib answers ABOR mid-transfer with 426 *and* 226 (ftplib reads one)."""
    make_file(root, "f.bin", 200_000)
    server = serve(SlowData(bytes_per_second=10_000))
    ftp = connect(server)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR f.bin")
    with conn:
        assert conn.recv(1024)
        assert ftp.abort().startswith("426 ")  # sent with MSG_OOB by ftplib
    assert ftp.getline() == "226 ABOR command successful."
    assert ftp.voidcmd("NOOP").startswith("200 ")
    ftp.quit()


def test_faults_compose(root: Path, serve: Serve) -> None:
    """Several faults in one list each apply to their own command."""
    make_file(root, "f.bin", 50_000)
    server = serve(
        Delay("PASS", seconds=0.2),
        Reply("SYST", code=502, text="Not today"),
        AbortTransferAfter(1_000),
        SlowData(bytes_per_second=1_000_000),
    )
    started = time.monotonic()
    ftp = connect(server)
    assert time.monotonic() - started >= 0.15
    with pytest.raises(ftplib.error_perm, match=r"^502 Not today$"):
        ftp.sendcmd("SYST")
    received = bytearray()
    with pytest.raises(ftplib.error_temp, match=r"^426 "):
        ftp.retrbinary("RETR f.bin", received.extend)
    assert len(received) == 1_000
    ftp.quit()


# ---------------------------------------------------------------------------
# File helpers
# ---------------------------------------------------------------------------


def test_make_file_is_deterministic(tmp_path: Path) -> None:
    """make_file output depends only on size and seed, and matches sha256_of."""
    a = make_file(tmp_path, "a.bin", 3_000_000, seed=5)
    b = make_file(tmp_path, "sub/b.bin", 3_000_000, seed=5)
    c = make_file(tmp_path, "c.bin", 3_000_000, seed=6)
    assert a == b == sha256_of(tmp_path / "sub" / "b.bin")
    assert a != c
    assert (tmp_path / "a.bin").stat().st_size == 3_000_000


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=0, max_value=5_000), seed=st.integers(0, 2**32))
def test_make_file_digest_property(size: int, seed: int) -> None:
    """For any size and seed the returned digest is the file's digest."""
    with tempfile.TemporaryDirectory() as scratch:
        digest = make_file(Path(scratch), "f.bin", size, seed=seed)
        assert (Path(scratch) / "f.bin").stat().st_size == size
        assert sha256_of(Path(scratch) / "f.bin") == digest
