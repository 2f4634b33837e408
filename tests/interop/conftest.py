"""Fixtures that run real FTP servers (see servers.py); every test here is marked ``interop``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    VsftpdServer,
    running,
)

INTEROP_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected under tests/interop with ``pytest.mark.interop``."""
    for item in items:
        if item.path.is_relative_to(INTEROP_DIR):
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def vsftpd_server() -> Iterator[VsftpdServer]:
    """vsftpd, plain FTP: user ``ftpdiag`` (read-write) and ``anonymous`` (read-only)."""
    with running(VsftpdServer) as srv:
        yield srv


@pytest.fixture
def vsftpd_tls_server() -> Iterator[VsftpdServer]:
    """vsftpd, explicit FTPS required for ``ftpdiag``, with ``require_ssl_reuse=YES``."""
    with running(VsftpdServer, tls=True) as srv:
        yield srv


@pytest.fixture
def proftpd_server() -> Iterator[ProftpdServer]:
    """ProFTPD, plain FTP, virtual user ``ftpdiag``."""
    with running(ProftpdServer) as srv:
        yield srv


@pytest.fixture
def proftpd_tls_server() -> Iterator[ProftpdServer]:
    """ProFTPD with mod_tls, explicit FTPS required, no session reuse required."""
    with running(ProftpdServer, tls=True) as srv:
        yield srv


@pytest.fixture
def pureftpd_server() -> Iterator[PureftpdServer]:
    """Pure-FTPd, plain FTP, virtual user ``ftpdiag`` from a PureDB."""
    with running(PureftpdServer) as srv:
        yield srv


@pytest.fixture
def pureftpd_tls_server() -> Iterator[PureftpdServer]:
    """Pure-FTPd, explicit FTPS required (``-Y 2``)."""
    with running(PureftpdServer, tls=True) as srv:
        yield srv


SERVER_FIXTURES = ["vsftpd_server", "proftpd_server", "pureftpd_server"]
TLS_SERVER_FIXTURES = ["vsftpd_tls_server", "proftpd_tls_server", "pureftpd_tls_server"]


@pytest.fixture(params=SERVER_FIXTURES)
def ftp_server(request: pytest.FixtureRequest) -> FTPServer:
    """Each plain-FTP server in turn."""
    server: FTPServer = request.getfixturevalue(request.param)
    return server


@pytest.fixture(params=TLS_SERVER_FIXTURES)
def ftps_server(request: pytest.FixtureRequest) -> FTPServer:
    """Each explicit-FTPS server in turn."""
    server: FTPServer = request.getfixturevalue(request.param)
    return server


@pytest.fixture(scope="session")
def payload() -> tuple[bytes, str]:
    """3 MB of random bytes and their sha256 hex digest."""
    data = os.urandom(3 * 1024 * 1024)
    return data, hashlib.sha256(data).hexdigest()
