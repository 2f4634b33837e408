"""``ftpdiag replay`` against real servers: sessions recorded through the proxy in front of
vsftpd, ProFTPD and Pure-FTPd failing (a wrong password, a missing file) and succeeding (a
download, its bytes kept with ``--record-data``) are replayed; the same client gets the same
replies and failure from the replay, and ftpdiag in front of it names the same root cause."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ftpdiag.proxy.recording import DataRecording
from ftpdiag.testing import ProxyHandle, ReplayHandle
from tests.test_replay_e2e import (
    curl_client,
    download,
    ftplib_session,
    record,
    replay_matches,
    wrong_password,
)

from .servers import FTPServer

pytestmark = pytest.mark.timeout(90)

Proxy = Callable[..., ProxyHandle]
Replay = Callable[..., ReplayHandle]


def test_wrong_password(
    ftp_server: FTPServer, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay, tmp_path: Path
) -> None:
    """The server's own 530 (and greeting) come back from the replay, any password accepted."""
    client = wrong_password(ftp_server.user)
    live = record(ftpdiag_proxy, (ftp_server.host, ftp_server.port), client, tmp_path / "s.jsonl")
    assert live.direct[-1].startswith("error_perm: 530") and live.cause == ["login.failed"]
    replay_matches(ftpdiag_proxy, ftpdiag_replay, tmp_path / "s.jsonl", client, live)


@pytest.mark.parametrize("tool", ["ftplib", "curl"])
def test_missing_file(
    ftp_server: FTPServer,
    ftpdiag_proxy: Proxy,
    ftpdiag_replay: Replay,
    tmp_path: Path,
    tool: str,
) -> None:
    """A 550 for a missing file, in the server's words, for ftplib and for curl."""
    user, password = ftp_server.user, ftp_server.password
    client = (
        ftplib_session(download("missing.bin"), user=user, password=password)
        if tool == "ftplib"
        else curl_client("missing.bin", user=user, password=password)
    )
    live = record(ftpdiag_proxy, (ftp_server.host, ftp_server.port), client, tmp_path / "s.jsonl")
    assert live.cause[0] is not None
    replay_matches(ftpdiag_proxy, ftpdiag_replay, tmp_path / "s.jsonl", client, live)


def test_download_with_recorded_bytes(
    ftp_server: FTPServer, ftpdiag_proxy: Proxy, ftpdiag_replay: Replay, tmp_path: Path
) -> None:
    """A clean download recorded with --record-data: the replay serves the same bytes, and a
    healthy session stays without a root cause."""
    ftp_server.write_file("file.bin", bytes(range(256)) * 4000)
    client = ftplib_session(
        download("file.bin", with_digest=True),
        user=ftp_server.user,
        password=ftp_server.password,
    )
    recording = DataRecording(tmp_path / "data")
    log = tmp_path / "s.jsonl"
    live = record(
        ftpdiag_proxy, (ftp_server.host, ftp_server.port), client, log, record_data=recording
    )
    assert live.cause == [None] and 1_024_000 in live.direct
    replay_matches(ftpdiag_proxy, ftpdiag_replay, log, client, live)
