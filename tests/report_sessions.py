"""Real sessions through the real proxy, logged by the real JSON-lines sink, for the report tests.

Each recorder drives a real client (ftplib) through a proxy in front of a real pyftpdlib server
(the sandbox, a fault-injecting fake, or pyftpdlib's TLS handler) and returns the path of the
log that ``--log-file`` would have written.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftpdiag import logconfig
from ftpdiag.testing import ProxyHandle, in_reactor
from tests.fake_servers import AbortTransferAfter, FakeFTPServer, make_file

TIMEOUT = 10.0
PASSWORD = "s3cret-Pa55"


@contextlib.contextmanager
def logging_to(path: Path) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """The proxy's sink while this block runs: ``logconfig.emit`` writing JSON lines to
    ``path`` exactly as ``ftpdiag proxy --log-file`` does."""
    with path.open("a", encoding="utf-8", buffering=1) as fh:
        in_reactor(logconfig.configure, None, "json", fh)
        try:
            yield logconfig.emit
        finally:
            in_reactor(lambda: None)
            in_reactor(logconfig.reset)


def wait_summaries(path: Path, count: int) -> None:
    """Until the log holds ``count`` session summaries (the sessions ended)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if text.count('"session.summary"') >= count:
            return
        assert time.monotonic() < deadline, f"{count} sessions did not end in {path}"
        time.sleep(0.02)


def records(path: Path) -> list[dict[str, Any]]:
    """The records of a log file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@contextlib.contextmanager
def proxied(
    upstream: tuple[str, int], sink: Callable[..., None], progress: float = 5.0, **options: Any
) -> Iterator[ProxyHandle]:
    """A proxy on port 0 whose records go to ``sink``, stopped when the block ends."""
    from ftpdiag.core.config import SessionConfig
    from ftpdiag.proxy.control import ProxySettings
    from ftpdiag.proxy.data import DataTimeouts
    from ftpdiag.proxy.server import start_proxy
    from ftpdiag.proxy.tls import ProxyTLS
    from ftpdiag.testing import _reactor

    tls = options.pop("tls", None)
    settings = ProxySettings(
        upstream=upstream,
        session=SessionConfig(client_tls="explicit" if tls else "off", **options),
        data=DataTimeouts(progress=progress),
        tls=tls or ProxyTLS(),
    )
    handle = ProxyHandle(address=("127.0.0.1", 0))

    def go() -> None:
        running = start_proxy(_reactor(), ("127.0.0.1", 0), settings, sink, stop_on_shutdown=False)
        handle.address = running.host_port
        handle._stop = running.stop

    in_reactor(go)
    try:
        yield handle
    finally:
        handle.stop()


def client(proxy: ProxyHandle) -> ftplib.FTP:
    """ftplib connected to the proxy."""
    ftp = ftplib.FTP()
    ftp.connect(*proxy.address, timeout=TIMEOUT)
    return ftp


def plain_session(log: Path, root: Path) -> None:
    """A healthy session: FEAT (multi-line), LIST, a download."""
    make_file(root, "big.bin", 8 << 20)
    with (
        FakeFTPServer(root) as server,
        logging_to(log) as sink,
        proxied(server.address, sink) as proxy,
    ):
        ftp = client(proxy)
        ftp.login("user", "secret")
        ftp.sendcmd("FEAT")
        ftp.retrlines("LIST", lambda _: None)
        ftp.voidcmd("TYPE I")
        ftp.retrbinary("RETR big.bin", lambda _: None)
        ftp.quit()
        wait_summaries(log, 1)


def failing_sessions(log: Path, root: Path) -> None:
    """Two sessions: a wrong password, then a download that the server aborts with 426 after
    100000 bytes, behind a PASV address that the proxy does not dial (NAT)."""
    make_file(root, "big.bin", 1 << 20)
    make_file(root, "small.bin", 30_000)
    faults = [AbortTransferAfter(100_000)]
    with (
        FakeFTPServer(root, faults=faults, masquerade_address="127.0.0.2") as server,
        logging_to(log) as sink,
        proxied(server.address, sink) as proxy,
    ):
        ftp = client(proxy)
        with pytest.raises(ftplib.error_perm):
            ftp.login("user", PASSWORD)
        ftp.quit()
        ftp = client(proxy)
        ftp.login("user", "secret")
        ftp.voidcmd("TYPE I")
        ftp.retrbinary("RETR small.bin", lambda _: None)
        ftp.size("big.bin")
        with pytest.raises(ftplib.error_temp, match=r"^426"):
            ftp.retrbinary("RETR big.bin", lambda _: None)
        ftp.quit()
        wait_summaries(log, 2)


def tls_session(log: Path, root: Path, tmp: Path) -> None:
    """AUTH TLS and PROT P toward pyftpdlib's TLS handler: a download long enough for several
    progress records at a short progress interval, and an upload. (A busy machine may pause
    the relay long enough for a stall warning: no test of this session asks for health.)"""
    from pyftpdlib.handlers import TLS_FTPHandler

    from ftpdiag.certs import ensure_ca, mint_leaf
    from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS
    from ftpdiag.sandbox import ServerThread

    server_ca, _ = ensure_ca(tmp / "server", "test server CA")
    proxy_ca, _ = ensure_ca(tmp / "proxy")
    server_leaf = mint_leaf(server_ca, ["127.0.0.1"], tmp / "server")
    proxy_leaf = mint_leaf(proxy_ca, ["127.0.0.1"], tmp / "proxy")
    make_file(root, "big.bin", 16 << 20)
    server = ServerThread(
        root,
        handler=TLS_FTPHandler,
        certfile=str(server_leaf.cert),
        keyfile=str(server_leaf.key),
    ).start()
    tls = ProxyTLS(
        ClientFacingTLS(proxy_leaf.cert, proxy_leaf.key),
        UpstreamTLS("127.0.0.1", True, server_ca.cert),
    )
    try:
        with (
            logging_to(log) as sink,
            proxied(server.address, sink, progress=0.03, tls=tls) as proxy,
        ):
            context = ssl.create_default_context(cafile=str(proxy_ca.cert))
            ftp = ftplib.FTP_TLS(context=context)
            ftp.connect(*proxy.address, timeout=TIMEOUT)
            ftp.auth()
            ftp.login("diag", "diag")
            ftp.prot_p()
            ftp.retrbinary("RETR big.bin", lambda _: None)
            ftp.storbinary("STOR up.bin", io.BytesIO(bytes(50_000)))
            ftp.quit()
            wait_summaries(log, 1)
    finally:
        server.stop()


def long_session(log: Path, root: Path, commands: int) -> None:
    """A session of ``commands`` commands: NOOPs, with a directory listing every 1000."""
    from ftpdiag.sandbox import ServerThread

    server = ServerThread(root).start()
    try:
        with logging_to(log) as sink, proxied(server.address, sink) as proxy:
            ftp = client(proxy)
            ftp.login("diag", "diag")
            for n in range(commands - 3):
                if n % 1000 == 999:
                    ftp.retrlines("LIST", lambda _: None)
                else:
                    ftp.voidcmd("NOOP")
            ftp.quit()
            wait_summaries(log, 1)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The logs of real sessions: healthy, failing (two sessions), and FTPS."""
    base = tmp_path_factory.mktemp("report-logs")
    out = {name: base / f"{name}.jsonl" for name in ("plain", "failing", "tls")}
    plain_session(out["plain"], base / "plain")
    failing_sessions(out["failing"], base / "failing")
    tls_session(out["tls"], base / "tls", base / "pki")
    return out
