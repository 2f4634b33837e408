"""The data-channel matrix through the ftpdiag proxy against real servers (vsftpd, proftpd and
pure-ftpd, see servers.py).

Every transfer goes client → proxy → server over 127.0.0.1 with each client data command
(PASV, EPSV, PORT, EPRT), from ftplib, curl and lftp, and is checked byte for byte; where a
server's own behaviour is the reference (listings, TYPE A conversion) the same exchange is
also run straight against the server and the two must agree. The proxy's transfer events are
checked against what really crossed the data connections. This is the real-server counterpart
of tests/test_data_channels.py (pyftpdlib).
"""

from __future__ import annotations

import ftplib
import io
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.testing import ProxyHandle
from tests.clients import CLIENT_MODE, CURL_MODES, curl, events, retr, sha256
from tests.conftest import BIG_SIZE, MODES, ModeFTP

from .servers import FTPServer, VsftpdServer, unavailable

pytestmark = pytest.mark.timeout(60)

Proxy = Callable[..., ProxyHandle]
Address = tuple[str, int]
Login = Callable[[FTPServer, Address, str], ModeFTP]

#: Bound on every lftp/curl subprocess (curl itself gives up after 20 s, lftp after net:timeout).
SUBPROCESS_TIMEOUT = 30
#: An LF-terminated text file, for TYPE A.
TEXT_LF = b"".join(b"line %d of a text file\n" % i for i in range(2000))
#: The servers whose FEAT announces MLST (and so MLSD); vsftpd has neither.
MLSD_SERVERS = {"proftpd", "pure-ftpd"}
#: Diagnosis rules about data connections and transfers: none may fire on a clean transfer.
DATA_RULES = ("transfer.", "data.", "pasv.", "active.", "epsv.", "eprt.", "security.")
#: lftp settings for each data command it can be made to use (on IPv4 its active mode is PORT).
LFTP_MODES = {
    "EPSV": "set ftp:passive-mode on; set ftp:prefer-epsv yes;",
    "PASV": "set ftp:passive-mode on; set ftp:prefer-epsv no;",
    "PORT": "set ftp:passive-mode off; set ftp:prefer-epsv no;",
}


# ---- helpers -------------------------------------------------------------------------------------
def require_tool(name: str) -> str:
    """The path of a client program, or skip (fail under CI) when it is not installed."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if path is None:
        unavailable(f"{name} not found on PATH: run scripts/test.sh which installs it")
    return path


def wire(ftp: ftplib.FTP, command: str, type_: str = "A") -> bytes:
    """Run a download command in TYPE ``type_``; return exactly the bytes the data connection
    carried (no line-ending handling), asserting a 226."""
    ftp.voidcmd(f"TYPE {type_}")
    with ftp.transfercmd(command) as conn:
        data = b"".join(iter(lambda: conn.recv(65536), b""))
    assert ftp.voidresp().startswith("226")
    return data


def send(ftp: ftplib.FTP, command: str, data: bytes, type_: str = "I") -> int:
    """Run an upload command in TYPE ``type_`` sending exactly ``data``, asserting a 226;
    return the number of bytes sent."""
    ftp.voidcmd(f"TYPE {type_}")
    with ftp.transfercmd(command) as conn:
        conn.sendall(data)
    assert ftp.voidresp().startswith("226")
    return len(data)


def transfer_ends(proxy: ProxyHandle) -> list[dict[str, Any]]:
    """The transfer.end events of the proxy's one session, once it has closed, after checking
    that each had one transfer.start, ended cleanly with 226 (the sender closed first, both ends
    by EOF), and that no data-channel problem was diagnosed or internal error logged."""
    close = proxy.wait_for("session.close")
    starts, ends = events(proxy, "transfer.start"), events(proxy, "transfer.end")
    assert [s["pipe"] for s in starts] == [e["pipe"] for e in ends]
    assert len({e["pipe"] for e in ends}) == len(ends) == close["transfers"]
    for end in ends:
        sender = "server" if end["direction"] == "download" else "client"
        assert (end["outcome"], end["aborted_by"], end["first_closed"]) == (226, None, sender)
        assert (end["client_end"], end["server_end"]) == ("eof", "eof")
    problems = [
        (d["rule"], d["title"])
        for d in proxy.diagnoses()
        if d["rule"].startswith(DATA_RULES) and d["severity"] != "info"
    ]
    assert not problems, f"clean transfers diagnosed as problems: {problems}"
    assert not events(proxy, "proxy.internal_error")
    return ends


def data_verbs(proxy: ProxyHandle) -> list[str]:
    """The data-connection commands (PASV, EPSV, PORT, EPRT) the client sent, in order."""
    return [e["verb"] for e in events(proxy, "command") if e["verb"] in CLIENT_MODE]


def only_end(proxy: ProxyHandle, command: str) -> dict[str, Any]:
    """The transfer.end of the session's only transfer, a ``command`` (see transfer_ends)."""
    ends = transfer_ends(proxy)
    assert [e["command"] for e in ends] == [command]
    return ends[0]


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big() -> bytes:
    """BIG_SIZE seeded random bytes: every byte value, CR and LF included, not a buffer multiple."""
    return random.Random(959).randbytes(BIG_SIZE)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The client's data-connection command."""
    return str(request.param)


@pytest.fixture
def proxy(ftp_server: FTPServer, ftpdiag_proxy: Proxy) -> ProxyHandle:
    """A proxy (same data mode on both sides) in front of each real server."""
    return ftpdiag_proxy((ftp_server.host, ftp_server.port))


@pytest.fixture
def login() -> Iterator[Login]:
    """Factory ``login(server, address, mode)``: a ``ModeFTP`` (10 s socket timeout) logged in
    as the server's account at ``address`` (the proxy, or the server itself); closed at the end."""
    clients: list[ModeFTP] = []

    def connect(srv: FTPServer, address: Address, mode: str) -> ModeFTP:
        ftp = ModeFTP(mode)
        clients.append(ftp)
        ftp.connect(*address, timeout=ftp.timeout)
        ftp.login(srv.user, srv.password)
        return ftp

    yield connect
    for ftp in clients:
        ftp.close()


def direct(srv: FTPServer) -> Address:
    return (srv.host, srv.port)


# ---- 1. ftplib: each server × each client data command -------------------------------------------
def test_retr(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str, big: bytes
) -> None:
    """RETR of a multi-MB random file arrives byte for byte and is logged once with its size."""
    ftp_server.write_file("big.bin", big)
    ftp = login(ftp_server, proxy.address, mode)
    assert sha256(retr(ftp, "big.bin")) == sha256(big)
    ftp.quit()
    end = only_end(proxy, "RETR")
    assert (end["direction"], end["type"], end["bytes"]) == ("download", "I", BIG_SIZE)
    assert end["mode"] == {"client": CLIENT_MODE[mode], "server": CLIENT_MODE[mode]}


def test_stor(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str, big: bytes
) -> None:
    """STOR of a multi-MB random file stores exactly the bytes the client sent."""
    ftp = login(ftp_server, proxy.address, mode)
    assert ftp.storbinary("STOR up.bin", io.BytesIO(big)).startswith("226")
    ftp.quit()
    assert sha256((ftp_server.root / "up.bin").read_bytes()) == sha256(big)
    end = only_end(proxy, "STOR")
    assert (end["direction"], end["path"], end["bytes"]) == ("upload", "up.bin", BIG_SIZE)


def test_appe(ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str) -> None:
    """APPE adds the uploaded bytes after the existing file's content."""
    before = random.Random(1).randbytes(1000)
    extra = bytes(range(256)) * 2000
    ftp_server.write_file("small.bin", before)
    ftp = login(ftp_server, proxy.address, mode)
    assert ftp.storbinary("APPE small.bin", io.BytesIO(extra)).startswith("226")
    ftp.quit()
    assert (ftp_server.root / "small.bin").read_bytes() == before + extra
    end = only_end(proxy, "APPE")
    assert (end["direction"], end["bytes"]) == ("upload", len(extra))


def test_rest_retr(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str, big: bytes
) -> None:
    """REST n then RETR delivers exactly the file's bytes from offset n, logged with rest=n."""
    offset = BIG_SIZE - 123_457
    ftp_server.write_file("big.bin", big)
    ftp = login(ftp_server, proxy.address, mode)
    assert retr(ftp, "big.bin", rest=offset) == big[offset:]
    ftp.quit()
    end = only_end(proxy, "RETR")
    assert (end["rest"], end["bytes"]) == (offset, BIG_SIZE - offset)


def test_listings(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str, big: bytes
) -> None:
    """LIST, NLST (and MLSD where FEAT announces MLST) carry exactly the bytes the server sends
    without the proxy, each logged as one transfer of that size."""
    ftp_server.write_file("big.bin", big)
    ftp_server.write_file("small.bin", b"x" * 1000)
    ftp_server.write_file("empty.bin", b"")
    names = {"big.bin", "small.bin", "empty.bin"}
    ftp = login(ftp_server, proxy.address, mode)
    ref = login(ftp_server, direct(ftp_server), mode)
    has_mlsd = any(line.strip().startswith("MLST") for line in ftp.sendcmd("FEAT").splitlines())
    assert has_mlsd == (ftp_server.name in MLSD_SERVERS)
    commands = ["LIST", "NLST"] + (["MLSD"] if has_mlsd else [])
    listings = {command: wire(ftp, command) for command in commands}
    ftp.quit()
    for command, data in listings.items():
        assert data == wire(ref, command), f"{command} through the proxy differs from direct"
    assert {line.split()[-1] for line in listings["LIST"].decode().splitlines()} >= names
    assert set(listings["NLST"].decode().split()) >= names
    if has_mlsd:  # "fact=value;...; name" lines
        lines = listings["MLSD"].decode().splitlines()
        facts = {line.partition(" ")[2]: line.partition(" ")[0].lower() for line in lines}
        assert f"size={BIG_SIZE};" in facts["big.bin"]
    ends = transfer_ends(proxy)
    assert [e["command"] for e in ends] == commands
    assert [e["bytes"] for e in ends] == [len(listings[c]) for c in commands]


def test_type_a_as_direct(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, mode: str
) -> None:
    """TYPE A uploads are stored, and TYPE A downloads are sent, exactly as the server does
    without the proxy (converting line ends or not, as configured)."""
    crlf = TEXT_LF.replace(b"\n", b"\r\n")
    ftp_server.write_file("text.txt", TEXT_LF)
    results: dict[str, tuple[bytes, bytes]] = {}
    for via, address in (("direct", direct(ftp_server)), ("proxy", proxy.address)):
        ftp = login(ftp_server, address, mode)
        send(ftp, f"STOR up-{via}.txt", crlf, type_="A")
        down = wire(ftp, "RETR text.txt", type_="A")
        ftp.quit()
        results[via] = ((ftp_server.root / f"up-{via}.txt").read_bytes(), down)
    assert results["proxy"] == results["direct"]
    stored, down = results["proxy"]
    assert stored in (TEXT_LF, crlf) and down in (TEXT_LF, crlf)  # converted, or left alone
    up_end, down_end = transfer_ends(proxy)
    assert (up_end["command"], up_end["type"], up_end["bytes"]) == ("STOR", "A", len(crlf))
    assert (down_end["command"], down_end["type"], down_end["bytes"]) == ("RETR", "A", len(down))


# ---- 2. curl: each server × each data command × each direction -----------------------------------
@pytest.mark.parametrize("direction", ["download", "upload"])
@pytest.mark.parametrize("verb", list(CURL_MODES))
def test_curl(
    ftp_server: FTPServer,
    proxy: ProxyHandle,
    verb: str,
    direction: str,
    big: bytes,
    tmp_path: Path,
) -> None:
    """curl downloads and uploads a multi-MB file byte-exactly through the proxy with each data
    command."""
    require_tool("curl")
    credentials = {"user": ftp_server.user, "password": ftp_server.password}
    if direction == "download":
        ftp_server.write_file("big.bin", big)
        curl(proxy, "big.bin", *CURL_MODES[verb], "-o", str(tmp_path / "out.bin"), **credentials)
        assert sha256((tmp_path / "out.bin").read_bytes()) == sha256(big)
    else:
        (tmp_path / "local.bin").write_bytes(big)
        curl(proxy, "up.bin", *CURL_MODES[verb], "-T", str(tmp_path / "local.bin"), **credentials)
        assert sha256((ftp_server.root / "up.bin").read_bytes()) == sha256(big)
    assert data_verbs(proxy) == [verb]
    end = only_end(proxy, "RETR" if direction == "download" else "STOR")
    assert (end["direction"], end["bytes"]) == (direction, BIG_SIZE)
    assert end["mode"] == {"client": CLIENT_MODE[verb], "server": CLIENT_MODE[verb]}


# ---- 3. lftp: each server × each data command it uses × each direction ---------------------------
def lftp(srv: FTPServer, proxy: ProxyHandle, settings: str, action: str, cwd: Path) -> None:
    """Run one lftp command through the proxy (bounded, one retry at most), asserting success."""
    script = (
        "set net:max-retries 1; set net:timeout 5; set net:reconnect-interval-base 1; "
        f"set cmd:fail-exit yes; set ftp:ssl-allow no; {settings} "
        f"open -u {srv.user},{srv.password} {proxy.host}:{proxy.port}; {action}"
    )
    done = subprocess.run(
        [require_tool("lftp"), "-c", script],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env={**os.environ, "HOME": str(cwd)},  # lftp keeps history and cache under $HOME
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"lftp exited {done.returncode}: {done.stderr}{done.stdout}"


@pytest.mark.parametrize("direction", ["download", "upload"])
@pytest.mark.parametrize("verb", list(LFTP_MODES))
def test_lftp(
    ftp_server: FTPServer,
    proxy: ProxyHandle,
    verb: str,
    direction: str,
    big: bytes,
    tmp_path: Path,
) -> None:
    """lftp gets and puts a multi-MB file byte-exactly through the proxy with the data command
    its settings select."""
    if direction == "download":
        ftp_server.write_file("big.bin", big)
        lftp(ftp_server, proxy, LFTP_MODES[verb], "get big.bin -o out.bin", tmp_path)
        assert sha256((tmp_path / "out.bin").read_bytes()) == sha256(big)
    else:
        (tmp_path / "local.bin").write_bytes(big)
        lftp(ftp_server, proxy, LFTP_MODES[verb], "put local.bin -o up.bin", tmp_path)
        assert sha256((ftp_server.root / "up.bin").read_bytes()) == sha256(big)
    assert data_verbs(proxy) == [verb]
    end = only_end(proxy, "RETR" if direction == "download" else "STOR")
    assert (end["direction"], end["bytes"]) == (direction, BIG_SIZE)
    assert end["mode"] == {"client": CLIENT_MODE[verb], "server": CLIENT_MODE[verb]}


# ---- 4. --upstream-mode translation against vsftpd -----------------------------------------------
@pytest.mark.parametrize(
    ("verb", "upstream_mode", "server_verb"),
    [
        ("PASV", "active", "PORT"),
        ("EPSV", "active", "EPRT"),
        ("PORT", "passive", "PASV"),
        ("EPRT", "passive", "EPSV"),
        ("PORT", "auto", "PASV"),
    ],
)
def test_vsftpd_upstream_mode_translation(
    vsftpd_server: VsftpdServer,
    ftpdiag_proxy: Proxy,
    login: Login,
    verb: str,
    upstream_mode: str,
    server_verb: str,
    big: bytes,
) -> None:
    """With --upstream-mode the proxy opens vsftpd's data connections in the other mode, RETR
    and STOR stay byte-exact, and the events report both sides' modes."""
    vsftpd_server.write_file("big.bin", big)
    proxy = ftpdiag_proxy(direct(vsftpd_server), upstream_mode=upstream_mode)
    ftp = login(vsftpd_server, proxy.address, verb)
    assert retr(ftp, "big.bin") == big
    assert ftp.storbinary("STOR copy.bin", io.BytesIO(big)).startswith("226")
    ftp.quit()
    assert (vsftpd_server.root / "copy.bin").read_bytes() == big
    ends = transfer_ends(proxy)
    mode = {"client": CLIENT_MODE[verb], "server": CLIENT_MODE[server_verb]}
    assert [(e["command"], e["mode"], e["bytes"]) for e in ends] == [
        ("RETR", mode, BIG_SIZE),
        ("STOR", mode, BIG_SIZE),
    ]
    assert [e["mode"] for e in events(proxy, "transfer.start")] == [mode, mode]
    # What vsftpd itself was sent, from its protocol log (log_ftp_protocol=YES):
    # ... FTP command: Client "127.0.0.1", "PORT 127,0,0,1,195,80"
    received = [
        line.split('"')[3].split()[0].upper()
        for line in vsftpd_server.log_text().splitlines()
        if "FTP command:" in line
    ]
    assert [v for v in received if v in CLIENT_MODE] == [server_verb, server_verb]


# ---- 5. one transfer.start/transfer.end per transfer, per server ---------------------------------
def test_one_start_and_end_per_transfer(
    ftp_server: FTPServer, proxy: ProxyHandle, login: Login, big: bytes
) -> None:
    """A session mixing every data command logs exactly one transfer.start and one transfer.end
    per transfer, each with the bytes that transfer moved."""
    ftp_server.write_file("big.bin", big)
    ftp_server.write_file("empty.bin", b"")
    ftp = login(ftp_server, proxy.address, "PASV")
    offset = BIG_SIZE // 3
    extra = b"appended" * 1000
    steps: list[tuple[str, str, Callable[[], int]]] = [
        ("PASV", "RETR", lambda: len(retr(ftp, "big.bin"))),
        ("EPSV", "STOR", lambda: send(ftp, "STOR copy.bin", big)),
        ("PORT", "APPE", lambda: send(ftp, "APPE copy.bin", extra)),
        ("EPRT", "RETR", lambda: len(retr(ftp, "copy.bin", rest=offset))),
        ("PASV", "RETR", lambda: len(retr(ftp, "empty.bin"))),
        ("EPSV", "NLST", lambda: len(wire(ftp, "NLST"))),
    ]
    sizes = []
    for verb, _, step in steps:
        ftp.mode = verb
        ftp.set_pasv(CLIENT_MODE[verb] == "passive")
        sizes.append(step())
    ftp.quit()
    assert sizes[:5] == [BIG_SIZE, BIG_SIZE, len(extra), BIG_SIZE + len(extra) - offset, 0]
    assert (ftp_server.root / "copy.bin").read_bytes() == big + extra
    ends = transfer_ends(proxy)
    starts = events(proxy, "transfer.start")
    expected = [(c, {"client": CLIENT_MODE[v], "server": CLIENT_MODE[v]}) for v, c, _ in steps]
    assert [(s["command"], s["mode"]) for s in starts] == expected
    assert [(e["command"], e["mode"]) for e in ends] == expected
    assert [e["bytes"] for e in ends] == sizes
    assert [s["rest"] for s in starts] == [0, 0, 0, offset, 0, 0]
    assert proxy.wait_for("session.close")["bytes"] == sum(sizes)
