"""The data stall timeout: a data connection on which nothing moves is ended with a diagnosis,
and the client gets a clean reply instead of hanging."""

from __future__ import annotations

import ftplib
import time
from collections.abc import Callable
from pathlib import Path

from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.testing import ProxyHandle, assert_diagnosed
from tests.fake_servers import FakeFTPServer, make_file


def test_reader_that_stops_reading_is_cut_after_the_stall_timeout(
    ftpdiag_proxy: Callable[..., ProxyHandle], tmp_path: Path
) -> None:
    """A client that stops reading mid-RETR: after the stall timeout the proxy ends the data
    connection, diagnoses transfer.stall_timeout, and the client reads a 4xx reply."""
    make_file(tmp_path, "big.bin", 32 * 1024 * 1024, seed=9)
    with FakeFTPServer(root=tmp_path) as server:
        proxy = ftpdiag_proxy(server.address, data=DataTimeouts(stall=0.6, progress=0))
        ftp = ftplib.FTP()
        ftp.connect(*proxy.address, timeout=10)
        ftp.login(server.user, server.password)
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("RETR big.bin")
        conn.recv(1024)  # then stop reading: buffers fill, nothing moves
        failed = proxy.wait_for("data.failed", timeout=10, kind="stall")
        assert failed["side"] == "server"
        started = time.monotonic()
        conn.close()
        try:
            reply = ftp.voidresp()
        except ftplib.error_temp as exc:
            reply = str(exc)
        assert reply.startswith("426") and time.monotonic() - started < 10
        ftp.close()
        assert_diagnosed(proxy, "transfer.stall_timeout", side="server")
