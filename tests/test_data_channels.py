"""End-to-end tests of the data channels: real pyftpdlib server, real proxy, real clients.

Every transfer goes client → proxy → server over 127.0.0.1 in all four client modes (PASV,
EPSV, PORT, EPRT), with and without mode translation, and is checked byte for byte; the
proxy's transfer events and diagnoses are checked against what really happened.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.testing import ProxyHandle, assert_diagnosed
from tests.clients import CLIENT_MODE, CURL_MODES, curl, events, retr, sha256
from tests.conftest import BIG_SIZE, MODES, PASSWORD, TIMEOUT, USER, ModeFTP, Served
from tests.fake_servers import (
    AbortTransferAfter,
    FakeFTPServer,
    Fault,
    Reply,
    SlowData,
    make_file,
    sha256_of,
)

pytestmark = pytest.mark.timeout(60)

Server = Callable[..., FakeFTPServer]
Proxy = Callable[..., ProxyHandle]
Client = Callable[..., ModeFTP]

TEXT_LF = b"".join(b"line %d of a text file\n" % i for i in range(2000))


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The client's data-connection command."""
    return str(request.param)


@pytest.fixture
def proxied(fake_server: Server, ftpdiag_proxy: Proxy) -> ProxyHandle:
    """A proxy (same mode on both sides) in front of a plain fake server."""
    return ftpdiag_proxy(fake_server().address)


# ---- 1. the client-mode matrix ----------------------------------------------------------------
def test_retr_byte_exact(
    mode: str, proxied: ProxyHandle, ftp_client: Client, served: Served
) -> None:
    """RETR of a multi-MB random file arrives byte for byte and is logged with its size."""
    ftp = ftp_client(proxied.address, mode)
    assert sha256(retr(ftp, "big.bin")) == served.sha["big.bin"]
    end = proxied.wait_for("transfer.end", command="RETR")
    assert end["bytes"] == BIG_SIZE
    assert end["outcome"] == 226
    assert end["mode"] == {"client": CLIENT_MODE[mode], "server": CLIENT_MODE[mode]}


def test_stor_byte_exact(
    mode: str, proxied: ProxyHandle, ftp_client: Client, served: Served, tmp_path: Path
) -> None:
    """STOR of a multi-MB random file stores exactly the bytes the client sent."""
    digest = make_file(tmp_path, "local.bin", BIG_SIZE + 7, seed=9)
    ftp = ftp_client(proxied.address, mode)
    with (tmp_path / "local.bin").open("rb") as fh:
        assert ftp.storbinary("STOR up.bin", fh).startswith("226")
    assert sha256_of(served.root / "up.bin") == digest
    end = proxied.wait_for("transfer.end", command="STOR")
    assert (end["direction"], end["bytes"], end["outcome"]) == ("upload", BIG_SIZE + 7, 226)


def test_appe_appends(mode: str, proxied: ProxyHandle, ftp_client: Client, served: Served) -> None:
    """APPE adds the uploaded bytes after the existing file's content."""
    before = (served.root / "small.bin").read_bytes()
    extra = bytes(range(256)) * 2000
    ftp = ftp_client(proxied.address, mode)
    assert ftp.storbinary("APPE small.bin", io.BytesIO(extra)).startswith("226")
    assert (served.root / "small.bin").read_bytes() == before + extra
    end = proxied.wait_for("transfer.end", command="APPE")
    assert end["bytes"] == len(extra)


def test_rest_retr_resumes(
    mode: str, proxied: ProxyHandle, ftp_client: Client, served: Served
) -> None:
    """REST n then RETR delivers exactly the file's bytes from offset n, logged with rest=n."""
    offset = BIG_SIZE - 123_457
    ftp = ftp_client(proxied.address, mode)
    tail = retr(ftp, "big.bin", rest=offset)
    with (served.root / "big.bin").open("rb") as fh:
        fh.seek(offset)
        assert tail == fh.read()
    end = proxied.wait_for("transfer.end", command="RETR")
    assert (end["rest"], end["bytes"]) == (offset, BIG_SIZE - offset)


def test_listings(mode: str, proxied: ProxyHandle, ftp_client: Client) -> None:
    """LIST, NLST and MLSD each list the directory over their own data connection."""
    names = {"big.bin", "small.bin", "empty.bin"}
    ftp = ftp_client(proxied.address, mode)
    lines: list[str] = []
    ftp.retrlines("LIST", lines.append)
    assert {line.split()[-1] for line in lines} == names
    assert set(ftp.nlst()) == names
    facts = dict(ftp.mlsd())
    assert set(facts) == names and int(facts["big.bin"]["size"]) == BIG_SIZE
    proxied.wait_for("transfer.end", command="MLSD")
    ends = events(proxied, "transfer.end")
    assert [e["command"] for e in ends] == ["LIST", "NLST", "MLSD"]
    assert len({e["pipe"] for e in ends}) == 3
    assert all(e["outcome"] == 226 and e["bytes"] > 0 for e in ends)


def test_ascii_mode_crlf(
    mode: str, proxied: ProxyHandle, ftp_client: Client, served: Served
) -> None:
    """TYPE A: an LF text file goes up as CRLF and is stored as LF, and comes down as CRLF."""
    crlf = TEXT_LF.replace(b"\n", b"\r\n")
    ftp = ftp_client(proxied.address, mode)
    assert ftp.storlines("STOR text.txt", io.BytesIO(TEXT_LF)).startswith("226")
    assert (served.root / "text.txt").read_bytes() == TEXT_LF
    ftp.voidcmd("TYPE A")
    with ftp.transfercmd("RETR text.txt") as conn:
        wire = b"".join(iter(lambda: conn.recv(65536), b""))
    assert ftp.voidresp().startswith("226")
    assert wire == crlf
    proxied.wait_for("transfer.end", command="RETR")
    up, down = events(proxied, "transfer.end")
    assert (up["type"], up["bytes"]) == ("A", len(crlf))
    assert (down["type"], down["bytes"]) == ("A", len(crlf))


# ---- 2. curl ----------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["download", "upload"])
@pytest.mark.parametrize("verb", list(CURL_MODES))
def test_curl(
    verb: str, direction: str, proxied: ProxyHandle, served: Served, tmp_path: Path
) -> None:
    """curl downloads and uploads byte-exactly through the proxy with each data command."""
    if direction == "download":
        curl(proxied, "big.bin", *CURL_MODES[verb], "-o", str(tmp_path / "out.bin"))
        assert sha256_of(tmp_path / "out.bin") == served.sha["big.bin"]
    else:
        digest = make_file(tmp_path, "local.bin", BIG_SIZE, seed=5)
        curl(proxied, "up.bin", *CURL_MODES[verb], "-T", str(tmp_path / "local.bin"))
        assert sha256_of(served.root / "up.bin") == digest
    assert events(proxied, "command", verb=verb)
    end = proxied.wait_for("transfer.end")
    assert (end["direction"], end["bytes"], end["outcome"]) == (direction, BIG_SIZE, 226)


# ---- 3. --upstream-mode translation -----------------------------------------------------------
REFUSE_PASSIVE: tuple[Fault, ...] = (
    Reply(command="PASV", code=502),
    Reply(command="EPSV", code=502),
)


@pytest.mark.parametrize(
    ("verb", "upstream_mode", "faults", "server_mode"),
    [
        ("PASV", "active", (), "active"),
        ("EPSV", "active", (), "active"),
        ("PORT", "passive", (), "passive"),
        ("EPRT", "passive", (), "passive"),
        ("PASV", "auto", (), "passive"),
        ("PASV", "auto", REFUSE_PASSIVE, "active"),
        ("EPSV", "auto", REFUSE_PASSIVE, "active"),
        ("PORT", "auto", REFUSE_PASSIVE, "active"),
    ],
)
def test_upstream_mode_translation(
    verb: str,
    upstream_mode: str,
    faults: tuple[Fault, ...],
    server_mode: str,
    fake_server: Server,
    ftpdiag_proxy: Proxy,
    ftp_client: Client,
    served: Served,
) -> None:
    """The proxy speaks the configured mode upstream (auto: active once passive is refused),
    transfers stay byte-exact and the events report both sides' modes."""
    proxy = ftpdiag_proxy(fake_server(*faults).address, upstream_mode=upstream_mode)
    ftp = ftp_client(proxy.address, verb)
    data = retr(ftp, "big.bin")
    assert sha256(data) == served.sha["big.bin"]
    assert ftp.storbinary("STOR copy.bin", io.BytesIO(data)).startswith("226")
    assert sha256_of(served.root / "copy.bin") == served.sha["big.bin"]
    proxy.wait_for("transfer.end", command="STOR")
    mode = {"client": CLIENT_MODE[verb], "server": server_mode}
    for name in ("transfer.start", "transfer.end"):
        assert [e["mode"] for e in events(proxy, name)] == [mode, mode]
    assert [e["bytes"] for e in events(proxy, "transfer.end")] == [BIG_SIZE, BIG_SIZE]
    if faults:
        assert len(events(proxy, "data.fallback", to="active")) == 2


# ---- 4. NAT: a PASV reply advertising another address ---------------------------------------
def test_nat_mismatch_dials_control_peer(
    fake_server: Server, ftpdiag_proxy: Proxy, ftp_client: Client, served: Served
) -> None:
    """A 227 advertising 127.0.0.2 still works (the proxy dials the control peer) and is
    diagnosed as a NAT mismatch."""
    proxy = ftpdiag_proxy(fake_server(masquerade_address="127.0.0.2").address)
    ftp = ftp_client(proxy.address, "PASV")
    assert sha256(retr(ftp, "big.bin")) == served.sha["big.bin"]
    passive = proxy.wait_for("data.passive")
    port = passive["advertised"].rsplit(":", 1)[1]
    assert passive["advertised"] == f"127.0.0.2:{port}"
    assert_diagnosed(
        proxy,
        "pasv.nat_mismatch",
        227,
        advertised=f"127.0.0.2:{port}",
        control_peer="127.0.0.1",
        dialled=f"127.0.0.1:{port}",
    )


def test_nat_mismatch_use_pasv_address_fails_cleanly(
    fake_server: Server, ftpdiag_proxy: Proxy, ftp_client: Client
) -> None:
    """With use_pasv_address the proxy dials the advertised 127.0.0.2, where nothing listens:
    diagnosed pasv.unreachable, and the client gets an error rather than a hang."""
    proxy = ftpdiag_proxy(
        fake_server(masquerade_address="127.0.0.2").address, use_pasv_address=True
    )
    ftp = ftp_client(proxy.address, "PASV")
    started = time.monotonic()
    with pytest.raises((OSError, ftplib.Error)):
        retr(ftp, "big.bin")
    assert time.monotonic() - started < TIMEOUT / 2
    proxy.wait_for("data.failed", side="server")
    assert_diagnosed(proxy, "pasv.unreachable", 425, side="server", kind="refused")
    # A client that sends RETR anyway gets 425 from the proxy at once: forwarded, the RETR
    # would make the server wait for its data connection (pyftpdlib: 30 s, then 421).
    ftp.makepasv()
    proxy.wait_for("data.failed", side="server", pipe=2)
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.sendcmd("RETR big.bin")
    assert time.monotonic() - started < TIMEOUT / 2
    assert ftp.voidcmd("NOOP").startswith("200")


# ---- 5. transfer events -------------------------------------------------------------------------
def test_one_start_and_end_per_data_connection(
    proxied: ProxyHandle, ftp_client: Client, served: Served
) -> None:
    """Each data connection gets exactly one transfer.start and one transfer.end with the
    command, path, direction, mode, type, rest, size, duration, rate and outcome."""
    ftp = ftp_client(proxied.address, "PASV")
    data = retr(ftp, "big.bin")
    assert ftp.storbinary("STOR copy.bin", io.BytesIO(data)).startswith("226")
    assert retr(ftp, "empty.bin") == b""
    ftp.nlst()
    ftp.quit()
    proxied.wait_for("session.close")
    starts, ends = events(proxied, "transfer.start"), events(proxied, "transfer.end")
    expected = [
        ("RETR", "big.bin", "download", "I", BIG_SIZE),
        ("STOR", "copy.bin", "upload", "I", BIG_SIZE),
        ("RETR", "empty.bin", "download", "I", 0),
        ("NLST", "", "download", "A", None),  # ftplib lists in ASCII
    ]
    assert [s["pipe"] for s in starts] == [e["pipe"] for e in ends]
    assert len({s["pipe"] for s in starts}) == len(expected)
    for start, end, (command, path, direction, type_, size) in zip(
        starts, ends, expected, strict=True
    ):
        fields = {
            "command": command,
            "path": path,
            "direction": direction,
            "mode": {"client": "passive", "server": "passive"},
            "type": type_,
            "rest": 0,
        }
        assert {k: start[k] for k in fields} == fields
        assert {k: end[k] for k in fields} == fields
        assert end["outcome"] == 226 and end["aborted_by"] is None
        if size is not None:
            assert end["bytes"] == size
        assert end["duration_ms"] >= 0 and end["rate_mbps"] >= 0
    assert ends[0]["duration_ms"] > 0 and ends[0]["rate_mbps"] > 0
    assert events(proxied, "session.close")[0]["transfers"] == len(expected)


def test_progress_events(
    fake_server: Server, ftpdiag_proxy: Proxy, ftp_client: Client, served: Served
) -> None:
    """A long (throttled) transfer logs transfer.progress with growing byte counts."""
    size = 640 * 1024
    make_file(served.root, "slow.bin", size, seed=3)
    proxy = ftpdiag_proxy(
        fake_server(SlowData(bytes_per_second=256 * 1024)).address, data=DataTimeouts(progress=0.2)
    )
    ftp = ftp_client(proxy.address, "PASV")
    assert len(retr(ftp, "slow.bin")) == size
    proxy.wait_for("transfer.end")
    progress = events(proxy, "transfer.progress", command="RETR", path="slow.bin")
    assert progress, "no transfer.progress during a ~2 s transfer"
    counts = [p["bytes"] for p in progress]
    assert counts == sorted(counts) and counts[0] > 0 and counts[-1] <= size


# ---- 6. ordering: 226 never before the last byte ------------------------------------------------
class RawControl:
    """A bare control connection with its own line buffer, so a test can tell exactly when a
    reply line has arrived (no hidden read-ahead as with ``makefile``)."""

    def __init__(self, address: tuple[str, int], source: str | None = None) -> None:
        self.sock = socket.create_connection(
            address, timeout=TIMEOUT, source_address=(source, 0) if source else None
        )
        self.buf = b""
        assert self.reply().startswith("220")

    def has_line(self) -> bool:
        return b"\r\n" in self.buf

    def fill(self) -> None:
        chunk = self.sock.recv(4096)
        assert chunk, "the proxy closed the control connection"
        self.buf += chunk

    def line(self) -> str:
        while not self.has_line():
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self) -> str:
        first = line = self.line()
        if first[3:4] == "-":
            while not (line[:3] == first[:3] and line[3:4] == " "):
                line = self.line()
        return line

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def login(self) -> None:
        assert self.cmd(f"USER {USER}").startswith("331")
        assert self.cmd(f"PASS {PASSWORD}").startswith("230")


def drain_nonblocking(conn: socket.socket) -> tuple[bytes, bool]:
    """Everything already received on ``conn`` without waiting, and whether EOF was seen."""
    conn.setblocking(False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def retr_watching_order(control: RawControl, name: str) -> tuple[str, bytes, bool]:
    """PASV + RETR on a raw connection, reading data and control as they come; returns the
    final reply, and the data and EOF state *at the moment the final reply line arrived*."""
    reply = control.cmd("PASV")
    assert reply.startswith("227"), reply
    with socket.create_connection(ftplib.parse227(reply), timeout=TIMEOUT) as conn:
        assert control.cmd(f"RETR {name}")[:1] == "1"
        received, eof = b"", False
        while not control.has_line():
            ready = select.select([control.sock] + ([] if eof else [conn]), [], [], TIMEOUT)[0]
            assert ready, "neither data nor a reply within the timeout"
            if conn in ready:
                chunk = conn.recv(65536)
                received, eof = received + chunk, not chunk
            if control.sock in ready:
                control.fill()
        if not eof:
            rest, eof = drain_nonblocking(conn)
            received += rest
        return control.reply(), received, eof


@pytest.mark.parametrize("size", [0, 1, 1000, 200_000])
def test_226_only_after_all_data(size: int, proxied: ProxyHandle, served: Served) -> None:
    """When the client reads 226, every data byte and the data EOF have already arrived."""
    content = (bytes(range(256)) * (size // 256 + 1))[:size]
    (served.root / "f.bin").write_bytes(content)
    control = RawControl(proxied.address)
    with control.sock:
        control.login()
        assert control.cmd("TYPE I").startswith("200")
        for _ in range(25):
            final, received, eof = retr_watching_order(control, "f.bin")
            assert final.startswith("226"), final
            assert eof and received == content


# ---- 7. aborts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["PASV", "PORT"])
@pytest.mark.parametrize(
    ("faults", "replies"),
    [
        # Throttled: the server is surely mid-transfer when ABOR comes: 426 then 226.
        ((SlowData(bytes_per_second=512 * 1024),), {("426", "226")}),
        # Full speed: the server may already have sent everything (its 226 is then held
        # behind the data in the proxy): 226 then "225 No transfer to abort", without a hang.
        ((), {("426", "226"), ("226", "225")}),
    ],
    ids=["mid-transfer", "full-speed"],
)
def test_client_abor_mid_transfer(
    verb: str,
    faults: tuple[Fault, ...],
    replies: set[tuple[str, str]],
    fake_server: Server,
    ftpdiag_proxy: Proxy,
    ftp_client: Client,
) -> None:
    """ABOR during a big RETR: both replies reach the client in order and at once, the data
    connections are torn down and transfer.end says aborted_by=client with the bytes so far."""
    proxy = ftpdiag_proxy(fake_server(*faults).address)
    ftp = ftp_client(proxy.address, verb)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    with conn:
        read = len(conn.recv(65536))
        assert read > 0
        started = time.monotonic()
        first = ftp.abort()
        second = ftp.getresp()
        assert time.monotonic() - started < 2.0
        assert (first[:3], second[:3]) in replies
        # The proxy ends the client's data connection by itself (EOF or reset).
        with contextlib.suppress(ConnectionResetError):
            while conn.recv(1 << 20):
                pass
    end = proxy.wait_for("transfer.end")
    # At full speed the whole file may be through (226) before ABOR arrives: then nothing
    # was aborted, and the transfer is not marked so.
    completed = first.startswith("226") and end["bytes"] == BIG_SIZE
    assert end["aborted_by"] == "client" or completed
    assert end["outcome"] == int(first[:3])
    assert read <= end["bytes"] <= BIG_SIZE
    if faults:
        # Throttled, the server cannot have sent everything; at full speed it may have written
        # the whole file and still answer 426 because its data socket was not closed yet.
        assert end["bytes"] < BIG_SIZE
    assert events(proxy, "data.close", pipe=end["pipe"])
    assert ftp.voidcmd("NOOP").startswith("200")
    assert len(retr(ftp, "small.bin")) == 1000


def test_server_426_after_nbytes(
    fake_server: Server, ftpdiag_proxy: Proxy, ftp_client: Client
) -> None:
    """A server that stops after n bytes with 426: the client gets exactly n bytes then 426,
    and the proxy logs outcome 426 and diagnoses transfer.aborted with bytes == n."""
    nbytes = 300_000
    proxy = ftpdiag_proxy(fake_server(AbortTransferAfter(nbytes)).address)
    ftp = ftp_client(proxy.address, "PASV")
    received = io.BytesIO()
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        ftp.retrbinary("RETR big.bin", received.write)
    assert len(received.getvalue()) == nbytes
    end = proxy.wait_for("transfer.end")
    assert (end["outcome"], end["bytes"], end["aborted_by"]) == (426, nbytes, None)
    assert_diagnosed(proxy, "transfer.aborted", 426, bytes=nbytes, command="RETR")
