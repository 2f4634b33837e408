"""Acceptance of ``ftpdiag replay``, end to end: a session is recorded through the proxy against a
real server that fails (tests/fake_servers, pyftpdlib), the log is replayed, and the same client
(ftplib, curl) gets the same replies and the same failure from the replay — straight and with
ftpdiag in front — and ftpdiag in front of the replay names the same root cause as it did live.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.proxy.recording import DataRecording
from ftpdiag.testing import ProxyHandle, ReplayHandle
from tests.fake_servers import (
    AbortTransferAfter,
    Fault,
    GreetingReply,
    NoCompletionReply,
    NoGreeting,
    Reply,
    ResetDataAfter,
    SlowData,
    Unsolicited,
)
from tests.test_rules_e2e import InnerCodeHelpHandler, StallingHandler, root, serve, settle

__all__ = ["root", "serve"]  # fixtures, used by name
pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0
USER, PASSWORD = "user", "secret"
BIG = 1 << 20
Address = tuple[str, int]
Client = Callable[[Address], list[Any]]
Proxy = Callable[..., ProxyHandle]
Replay = Callable[..., ReplayHandle]


# ---- clients: each returns a transcript of what it saw -------------------------------------------
def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ftplib.Error):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def ftplib_session(
    *steps: Callable[[ftplib.FTP, list[Any]], None], user: str = USER, password: str = PASSWORD
) -> Client:
    """An ftplib client that logs in and runs ``steps``, writing down every reply and error."""

    def run(address: Address) -> list[Any]:
        seen: list[Any] = []
        ftp = ftplib.FTP(timeout=TIMEOUT)
        try:
            seen.append(ftp.connect(*address))
            seen.append(ftp.login(user, password))
            for step in steps:
                step(ftp, seen)
            seen.append(ftp.quit())
        except (ftplib.Error, OSError, EOFError) as exc:
            seen.append(_outcome(exc))
        finally:
            ftp.close()
        return seen

    return run


def feat(ftp: ftplib.FTP, seen: list[Any]) -> None:
    seen.append(ftp.sendcmd("FEAT"))


def download(name: str, with_digest: bool = False) -> Callable[[ftplib.FTP, list[Any]], None]:
    """RETR ``name``: the reply or error, and the size (and, when ``digest``, the sha256) of
    what arrived."""

    def step(ftp: ftplib.FTP, seen: list[Any]) -> None:
        digest, size = hashlib.sha256(), [0]

        def got(chunk: bytes) -> None:
            digest.update(chunk)
            size[0] += len(chunk)

        try:
            seen.append(ftp.retrbinary(f"RETR {name}", got))
        except (ftplib.Error, OSError, EOFError) as exc:
            seen.append(_outcome(exc))
        seen.append(size[0])
        if with_digest:
            seen.append(digest.hexdigest())

    return step


def curl_client(path: str, *args: str, user: str = USER, password: str = PASSWORD) -> Client:
    """curl downloading ``path``: its exit status, its error line and the bytes it got."""

    def run(address: Address) -> list[Any]:
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed (scripts/test.sh installs it)")
        url = f"ftp://{address[0]}:{address[1]}/{path}"
        cmd = [curl, "-sS", "--max-time", "10", "-u", f"{user}:{password}", *args, url]
        done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        error = done.stderr.decode(errors="replace").strip()
        return [done.returncode, error, len(done.stdout)]  # filler bytes: compare sizes

    return run


# ---- record, replay, compare ---------------------------------------------------------------------
def root_causes(events: list[dict[str, Any]]) -> list[str | None]:
    return [
        e["root_cause"]["rule"] if e["root_cause"] else None
        for e in events
        if e["event"] == "session.summary"
    ]


def record(
    ftpdiag_proxy: Proxy, upstream: Address, client: Client, log: Path, **options: Any
) -> Live:
    """Run ``client`` straight against ``upstream``, then through a proxy in front of it;
    write the proxy's log to ``log`` as JSON lines; return what the client saw each time and
    the root cause ftpdiag gave."""
    direct = client(upstream)
    proxy = ftpdiag_proxy(upstream, **options)
    seen = client(proxy.address)
    settle(proxy)
    log.write_text("".join(json.dumps(e, default=str) + "\n" for e in proxy.events))
    return Live(direct, seen, root_causes(proxy.events))


def shape(transcript: list[Any]) -> list[Any]:
    """A transcript without the texts a server varies between runs (its clock, its user
    count, a transfer's speed): reply codes, error kinds and byte counts. The run recorded
    through ftpdiag is compared with its replay exactly; the run straight against the live
    server, being another run, by its shape."""
    return [
        re.sub(r"^((?:\w+: )?\d{3}).*", r"\1", v, flags=re.S) if isinstance(v, str) else v
        for v in transcript
    ]


@dataclass
class Live:
    """What the client saw from the live server, straight and through ftpdiag, and the root
    cause ftpdiag named."""

    direct: list[Any]
    proxied: list[Any]
    cause: list[str | None]


def replay_matches(
    ftpdiag_proxy: Proxy,
    ftpdiag_replay: Replay,
    log: Path,
    client: Client,
    live: Live,
    proxy_options: dict[str, Any] | None = None,
    racing: frozenset[str | None] = frozenset(),
    **options: Any,
) -> ReplayHandle:
    """The replay of ``log`` gives ``client`` what the live server gave it, straight (by
    shape) and through ftpdiag (exactly), and ftpdiag in front of it names the live root
    cause (or, for a client that races the server, one of the ``racing`` rules the live
    server also gave)."""
    replay = ftpdiag_replay(log, **options)
    assert shape(client(replay.address)) == shape(live.direct)
    proxy = ftpdiag_proxy(replay.address, **(proxy_options or {}))
    assert client(proxy.address) == live.proxied
    settle(proxy)
    cause = root_causes(proxy.events)
    assert cause == live.cause or {*cause, *live.cause} <= racing, (cause, live.cause)
    assert not replay.mismatches, replay.mismatches
    return replay


def scenario(
    serve: Any,
    ftpdiag_proxy: Proxy,
    ftpdiag_replay: Replay,
    tmp_path: Path,
    client: Client,
    *faults: Fault,
    server: dict[str, Any] | None = None,
    proxy_options: dict[str, Any] | None = None,
    racing: frozenset[str | None] = frozenset(),
    **options: Any,
) -> tuple[list[Any], list[str | None]]:
    """Record ``client`` against a fake server with ``faults``, then check the replay; returns
    what the client saw through ftpdiag, and the root cause."""
    log = tmp_path / "session.jsonl"
    upstream = serve(*faults, **(server or {})).address
    live = record(ftpdiag_proxy, upstream, client, log, **(proxy_options or {}))
    replay_matches(
        ftpdiag_proxy, ftpdiag_replay, log, client, live, proxy_options, racing, **options
    )
    return live.proxied, live.cause


Replayed = Callable[..., tuple[list[Any], list[str | None]]]


@pytest.fixture
def replayed(serve: Any, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay, tmp_path: Path) -> Replayed:
    """``replayed(client, *faults, **options)``: :func:`scenario` with this test's fixtures."""

    def run(client: Client, *faults: Fault, **options: Any) -> tuple[list[Any], list[str | None]]:
        return scenario(serve, ftpdiag_proxy, ftpdiag_replay, tmp_path, client, *faults, **options)

    return run


# ---- the acceptance scenarios --------------------------------------------------------------------
def test_wrong_password_ftplib(replayed: Replayed) -> None:
    """530 to PASS: the replay accepts any password and refuses it the way the server did."""
    seen, cause = replayed(wrong_password())
    assert seen[-1] == "error_perm: 530 Authentication failed."
    assert cause == ["login.failed"]


def wrong_password(user: str = USER) -> Client:
    """ftplib logging in as ``user`` with a wrong password (patiently: Pure-FTPd waits about
    four seconds, sometimes more, before its 530)."""

    def run(address: Address) -> list[Any]:
        seen: list[Any] = []
        ftp = ftplib.FTP(timeout=15)
        try:
            seen.append(ftp.connect(*address))
            ftp.login(user, "wrong")
        except ftplib.Error as exc:
            seen.append(_outcome(exc))
        finally:
            ftp.close()
        return seen

    return run


def test_wrong_password_curl(replayed: Replayed) -> None:
    """curl with a wrong password fails with the same exit status against the replay."""
    seen, cause = replayed(curl_client("big.bin", password="bad"))
    assert seen[0] == 67 and cause == ["login.failed"]


def test_missing_file_ftplib(replayed: Replayed) -> None:
    """550 to RETR of a missing file, after a FEAT (answered from the per-verb table)."""
    seen, cause = replayed(
        ftplib_session(feat, download("missing.bin")),
    )
    assert "error_perm: 550 No such file or directory." in seen
    assert cause == ["file.not_found"]


def test_missing_file_curl(replayed: Replayed) -> None:
    """curl's 550 (exit 78) comes back from the replay, EPSV and SIZE included."""
    seen, cause = replayed(curl_client("missing.bin"))
    assert seen[0] == 78 and cause[0] is not None  # curl asks SIZE first: the 550 answers it


def test_426_mid_transfer_ftplib(replayed: Replayed) -> None:
    """100000 bytes then 426: the replay sends exactly as many (filler) bytes, then 426."""
    seen, cause = replayed(
        ftplib_session(download("big.bin")),
        AbortTransferAfter(100_000),
    )
    assert "error_temp: 426 Connection closed; transfer aborted." in seen and 100_000 in seen
    assert cause == ["transfer.aborted"]


def test_426_mid_transfer_curl(replayed: Replayed) -> None:
    """curl sees the same cut download (its exit status and byte count) from the replay."""
    seen, cause = replayed(
        curl_client("big.bin"),
        AbortTransferAfter(100_000),
        # curl hangs up as soon as the data ends, racing the 426: against the live server too,
        # ftpdiag sees the session end before the reply about one run in four.
        racing=frozenset({"transfer.aborted", "transfer.interrupted"}),
    )
    assert seen[0] != 0 and seen[2] == 100_000
    assert set(cause) <= {"transfer.aborted", "transfer.interrupted"}


def test_reset_mid_transfer(replayed: Replayed) -> None:
    """An RST after 100000 bytes is replayed as an RST (ftpdiag: server_reset)."""
    _, cause = replayed(
        ftplib_session(download("big.bin")),
        ResetDataAfter(100_000),
    )
    assert cause == ["transfer.aborted"]


def test_data_connection_refused_425(replayed: Replayed) -> None:
    """425 to RETR (the server never took the data connection) comes back as 425."""
    seen, cause = replayed(
        ftplib_session(download("small.bin")),
        Reply("RETR", 425, "Can't open data connection."),
    )
    assert "error_temp: 425 Can't open data connection." in seen
    assert cause == ["data.cannot_open_passive"]


def test_multiline_greeting_byte_for_byte(
    serve: Any, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay, tmp_path: Path
) -> None:
    """A multi-line greeting reaches a raw socket from the replay byte for byte."""
    banner = "A long welcome banner that pyftpdlib sends as a multi-line 220 greeting, always."
    server = serve(handler_attrs={"banner": banner})
    log = tmp_path / "s.jsonl"
    live = record(ftpdiag_proxy, server.address, ftplib_session(feat), log)
    assert live.proxied[0] == f"220-{banner}\n220 "
    replay_matches(ftpdiag_proxy, ftpdiag_replay, log, ftplib_session(feat), live)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        expected = _read_reply(raw)
    replay = ftpdiag_replay(log)
    with socket.create_connection(replay.address, timeout=TIMEOUT) as raw:
        assert _read_reply(raw) == expected == f"220-{banner}\r\n220 \r\n".encode()


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or b"\r\n220 " not in b"\r\n" + data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_421_greeting_and_close(replayed: Replayed) -> None:
    """421 instead of the greeting, then the server hangs up: so does the replay."""
    seen, cause = replayed(
        ftplib_session(),
        GreetingReply(421, "Too many connections (8) from this IP"),
    )
    assert seen == ["error_temp: 421 Too many connections (8) from this IP"]
    assert cause == ["greeting.too_many"]


def test_421_after_command_closes(replayed: Replayed) -> None:
    """421 to a command and a close at that point: the client's next read sees the end."""
    seen, cause = replayed(
        ftplib_session(feat, download("small.bin")),
        Reply("FEAT", 421, "Service not available, closing control connection.", close=True),
    )
    assert seen[-1].startswith("error_temp: 421")
    assert cause == ["control.idle_timeout"]  # the engine reads a 421 and a close so, live too


def test_226_missing(replayed: Replayed) -> None:
    """All bytes and no 226: the replay sends the bytes and, like the server, no reply."""

    def client(address: Address) -> list[Any]:
        ftp = ftplib.FTP(timeout=1.0)
        seen: list[Any] = [ftp.connect(*address), ftp.login(USER, PASSWORD)]
        ftp.voidcmd("TYPE I")
        with ftp.transfercmd("RETR small.bin") as conn:
            seen.append(len(b"".join(iter(lambda: conn.recv(65536), b""))))
        try:
            ftp.voidresp()
        except OSError as exc:
            seen.append(_outcome(exc))
        ftp.close()
        return seen

    seen, cause = replayed(
        client,
        NoCompletionReply(),
        proxy_options={"completion_timeout": 0.3},
    )
    assert seen[-2:] == [1000, "TimeoutError"]
    assert cause == ["transfer.no_completion"]


def test_stalled_transfer(replayed: Replayed) -> None:
    """200000 bytes, then nothing on an open data connection: the replay stalls the same way."""

    def client(address: Address) -> list[Any]:
        ftp = ftplib.FTP(timeout=TIMEOUT)
        seen: list[Any] = [ftp.connect(*address), ftp.login(USER, PASSWORD)]
        ftp.voidcmd("TYPE I")
        got = 0
        with ftp.transfercmd("RETR big.bin") as conn:
            conn.settimeout(0.5)
            try:
                while chunk := conn.recv(65536):
                    got += len(chunk)
            except TimeoutError:
                seen.append("stalled")
        seen.append(got)
        ftp.close()
        return seen

    seen, cause = replayed(
        client,
        server={"handler_base": StallingHandler},
        proxy_options={"data": DataTimeouts(progress=0.1)},
    )
    assert seen[-2:] == ["stalled", 200_000]
    assert cause == ["transfer.stalled"]


def test_recorded_bytes_are_served(
    serve: Any, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay, tmp_path: Path, root: Path
) -> None:
    """With --record-data the replay serves the real bytes (same sha256), files mode 0600."""
    client = ftplib_session(download("big.bin", with_digest=True))
    log = tmp_path / "s.jsonl"
    recording = DataRecording(tmp_path / "data", max_bytes=BIG)
    live = record(ftpdiag_proxy, serve().address, client, log, record_data=recording)
    assert live.proxied[-4].startswith("226")
    files = list((tmp_path / "data").iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert files[0].read_bytes() == (root / "big.bin").read_bytes()
    replay_matches(ftpdiag_proxy, ftpdiag_replay, log, client, live)


def test_odd_multiline_reply(replayed: Replayed) -> None:
    """A 214 whose inner line starts '211 ' comes back as it was, and ftpdiag judges it alike
    (a warning under a session whose HELP worked)."""

    def helper(ftp: ftplib.FTP, seen: list[Any]) -> None:
        seen.append(ftp.sendcmd("HELP"))

    seen, cause = replayed(
        ftplib_session(helper),
        server={"handler_base": InnerCodeHelpHandler},
    )
    assert "\n211 USER PASS RETR STOR (this line looks like the end of a reply)\n" in seen[2]
    assert cause == [None]  # a warning, not a root cause: the HELP the user asked for worked


def test_greeting_missing(replayed: Replayed) -> None:
    """A server that never speaks: the replay is silent too, and ftpdiag times it out alike."""

    def client(address: Address) -> list[Any]:
        ftp = ftplib.FTP(timeout=1.5)
        try:
            return [ftp.connect(*address)]
        except (ftplib.Error, OSError) as exc:
            return [_outcome(exc)]
        finally:
            ftp.close()

    seen, cause = replayed(
        client,
        NoGreeting(),
        proxy_options={"greeting_timeout": 0.3},
    )
    assert len(seen) == 1 and seen[0].startswith("error_temp: 421") and "greeting" in seen[0]
    assert cause == ["greeting.missing"]


def test_upload_reset(replayed: Replayed) -> None:
    """An upload the server resets after 100000 bytes: the replay reads as many, then RST."""

    def upload(ftp: ftplib.FTP, seen: list[Any]) -> None:
        try:
            # Far more than socket buffers hold, so the client surely meets the reset.
            seen.append(ftp.storbinary("STOR up.bin", io.BytesIO(bytes(32 * BIG))))
        except (ftplib.Error, OSError) as exc:
            seen.append(_outcome(exc))

    # Relayed through the reactor: a spliced pipe may see the server's RST as a plain end of
    # file (the kernel reports a reset once), and the recording would then say "eof".
    seen, cause = replayed(
        ftplib_session(upload),
        ResetDataAfter(100_000),
        proxy_options={"data": DataTimeouts(splice=False)},
    )
    assert seen[2] in ("ConnectionResetError", "BrokenPipeError") or "426" in seen[2]
    assert cause[0] is not None


def test_line_that_is_no_reply(replayed: Replayed) -> None:
    """A server line without a reply code after the NOOP's 200 comes back as it was."""

    def noop(ftp: ftplib.FTP, seen: list[Any]) -> None:
        seen.append(ftp.voidcmd("NOOP"))
        seen.append(ftp.getline())

    seen, cause = replayed(ftplib_session(noop), Unsolicited("this is not a reply", "NOOP"))
    assert seen[2:4] == ["200 I successfully did nothing'.", "this is not a reply"]
    assert cause == [None]  # a warning, not a root cause: the NOOP worked


def test_client_abor_mid_download(replayed: Replayed) -> None:
    """The client sends ABOR mid-download from a slow server: the replay's download ends as
    the recorded one did (the client hung up first) and ABOR gets 426 then 226, as pyftpdlib
    answered it."""

    def client(address: Address) -> list[Any]:
        ftp = ftplib.FTP(timeout=TIMEOUT)
        seen: list[Any] = [ftp.connect(*address), ftp.login(USER, PASSWORD)]
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("RETR big.bin")
        seen.append(len(conn.recv(10_000)) > 0)
        seen.append(ftp.abort())
        conn.close()
        seen += [ftp.getresp(), ftp.quit()]
        return seen

    # Replayed at full speed, the download may be over before the client's ABOR reaches the
    # proxy: the server then ended it (426), as the live one would have with a faster link.
    seen, cause = replayed(
        client, SlowData(200_000), racing=frozenset({None, "transfer.aborted"})
    )
    assert seen[3].startswith("426") and seen[4].startswith("226")
    assert cause == [None]  # the client stopped the download on purpose
