"""Shared fixtures of the end-to-end tests: a fault-injecting server over seeded files and an
ftplib client that can be told which data-connection command to use."""

from __future__ import annotations

import ftplib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fake_servers import FakeFTPServer, Fault, make_file

#: Bound on every blocking socket operation of a test client.
TIMEOUT = 10.0
#: Size of the "big" seeded file: a few MB, not a multiple of any buffer size.
BIG_SIZE = 3 * 1024 * 1024 + 4321
USER, PASSWORD = "user", "secret"
MODES = ("PASV", "EPSV", "PORT", "EPRT")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker (deselect with ``-m 'not slow'``)."""
    config.addinivalue_line("markers", "slow: a test that takes several seconds (e.g. 200 MB)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots and PDFs."""
    from tests.browser import ARTEFACTS

    if ARTEFACTS:
        terminalreporter.section("report artefacts")
        for path in ARTEFACTS:
            terminalreporter.write_line(str(path))


@pytest.fixture(autouse=True, scope="session")
def private_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the proxy's local CA (and anything else it writes to its config directory) out of
    the user's home: every test, and every subprocess it starts, uses a temporary one."""
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    yield
    if saved is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = saved


@dataclass
class Served:
    """The served directory and the sha256 of each seeded file."""

    root: Path
    sha: dict[str, str]

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size


@pytest.fixture
def served(tmp_path: Path) -> Served:
    """A served directory with ``big.bin`` (random, a few MB), ``small.bin`` and ``empty.bin``."""
    root = tmp_path / "root"
    root.mkdir()
    sha = {
        "big.bin": make_file(root, "big.bin", BIG_SIZE, seed=1),
        "small.bin": make_file(root, "small.bin", 1000, seed=2),
        "empty.bin": make_file(root, "empty.bin", 0),
    }
    return Served(root, sha)


@pytest.fixture
def fake_server(served: Served) -> Iterator[Callable[..., FakeFTPServer]]:
    """Factory ``fake_server(*faults, **kwargs)`` serving ``served.root``; stopped at the end."""
    servers: list[FakeFTPServer] = []

    def start(*faults: Fault, **kwargs: Any) -> FakeFTPServer:
        server = FakeFTPServer(root=served.root, faults=faults, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class ModeFTP(ftplib.FTP):
    """ftplib that opens every data connection with one fixed command: PASV, EPSV, PORT or
    EPRT (plain ftplib only uses EPSV/EPRT on IPv6)."""

    def __init__(self, mode: str) -> None:
        super().__init__(timeout=TIMEOUT)
        self.mode = mode
        self.set_pasv(mode in ("PASV", "EPSV"))

    def makepasv(self) -> tuple[str, int]:
        if self.mode == "EPSV":
            assert self.sock is not None
            return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        return super().makepasv()

    def makeport(self) -> socket.socket:
        assert self.sock is not None
        host = self.sock.getsockname()[0]
        sock = socket.create_server((host, 0), backlog=1)
        try:
            port = sock.getsockname()[1]
            if self.mode == "EPRT":
                self.sendeprt(host, port)
            else:
                self.sendport(host, port)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(TIMEOUT)
        return sock


@pytest.fixture
def ftp_client() -> Iterator[Callable[..., ModeFTP]]:
    """Factory ``ftp_client(address, mode="PASV")``: a logged-in ``ModeFTP``, closed at the end."""
    clients: list[ModeFTP] = []

    def connect(address: tuple[str, int], mode: str = "PASV") -> ModeFTP:
        ftp = ModeFTP(mode)
        clients.append(ftp)
        ftp.connect(*address, timeout=TIMEOUT)
        ftp.login(USER, PASSWORD)
        return ftp

    yield connect
    for ftp in clients:
        ftp.close()
