"""Client-side helpers shared by the end-to-end data-channel tests (tests/test_data_channels.py,
against pyftpdlib) and the interop matrix (tests/interop/test_proxy_interop.py, against real
servers): event filtering, checksums, an ftplib download, and curl with each data command."""

from __future__ import annotations

import ftplib
import hashlib
import io
import subprocess
from typing import Any

from ftpdiag.testing import ProxyHandle
from tests.conftest import PASSWORD, USER

#: The data mode each client data-connection command stands for.
CLIENT_MODE = {"PASV": "passive", "EPSV": "passive", "PORT": "active", "EPRT": "active"}

#: curl options that make it open its data connections with each command.
CURL_MODES = {
    "EPSV": ["--ftp-pasv"],
    "PASV": ["--ftp-pasv", "--disable-epsv"],
    "EPRT": ["--ftp-port", "127.0.0.1"],
    "PORT": ["--ftp-port", "127.0.0.1", "--disable-eprt"],
}


def events(proxy: ProxyHandle, name: str, **match: Any) -> list[dict[str, Any]]:
    """The events called ``name`` whose fields equal ``match``."""
    return [
        e
        for e in list(proxy.events)
        if e["event"] == name and all(e.get(k) == v for k, v in match.items())
    ]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def retr(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    """Download ``name`` in binary mode, asserting a 226."""
    out = io.BytesIO()
    assert ftp.retrbinary(f"RETR {name}", out.write, rest=rest).startswith("226")
    return out.getvalue()


def curl(
    proxy: ProxyHandle, path: str, *args: str, user: str = USER, password: str = PASSWORD
) -> None:
    """Run curl against the proxy (bounded), asserting success."""
    url = f"ftp://{proxy.host}:{proxy.port}/{path}"
    cmd = ["curl", "-sS", "--max-time", "20", "-u", f"{user}:{password}", *args, url]
    done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
