"""``ftpdiag proxy --record-data``: what the server sent on each data connection kept for
replay — capped, mode 0600, never for TLS-protected data unless asked, the relay byte-exact."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.proxy.recording import DataRecording
from ftpdiag.testing import ProxyHandle
from tests.test_tls import Pki, download, files, ftps_client, pki, proxy_tls, tls_server

__all__ = ["files", "pki", "tls_server"]  # fixtures, used by name

pytestmark = pytest.mark.timeout(60)


def test_tap_caps_and_protects(tmp_path: Path) -> None:
    """The file holds at most the cap, is mode 0600, and its record says it was truncated."""
    records: list[dict[str, Any]] = []
    tap = DataRecording(tmp_path / "d", max_bytes=10).tap("ab12", 3, records.append)
    tap.write(b"0123456")
    tap.write(b"789abc")
    tap.close()
    tap.close()
    (path,) = (tmp_path / "d").iterdir()
    assert path.name.startswith("ab12-3-") and path.suffix == ".bin"
    assert path.read_bytes() == b"0123456789" and path.stat().st_mode & 0o777 == 0o600
    assert records == [
        {"pipe": 3, "file": str(path), "bytes": 10, "truncated": True, "error": None}
    ]


def test_tap_without_bytes_leaves_nothing(tmp_path: Path) -> None:
    """A data connection on which the server sent nothing makes no file and no record."""
    records: list[dict[str, Any]] = []
    DataRecording(tmp_path / "d").tap("ab12", 1, records.append).close()
    assert records == [] and not (tmp_path / "d").exists()


def test_tap_refuses_tls_unless_asked(tmp_path: Path) -> None:
    """TLS-protected data is kept only with ``tls=True`` (``--record-tls-data``)."""
    assert DataRecording(tmp_path).tap("s", 1, print).accepts(tls=False)
    assert not DataRecording(tmp_path).tap("s", 1, print).accepts(tls=True)
    assert DataRecording(tmp_path, tls=True).tap("s", 1, print).accepts(tls=True)


@pytest.mark.parametrize("record_tls", [False, True], ids=["default", "record-tls-data"])
def test_prot_p_data_recorded_only_when_asked(
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tls_server: Callable[..., Any],
    pki: Pki,
    files: tuple[Path, str],
    tmp_path: Path,
    record_tls: bool,
) -> None:
    """Under PROT P nothing is written by default; with record_tls the bytes are kept; the
    client gets every byte either way."""
    server = tls_server(tls_control_required=True, tls_data_required=True)
    recording = DataRecording(tmp_path / "data", tls=record_tls)
    proxy = ftpdiag_proxy(
        server.address, tls=proxy_tls(pki), client_tls="explicit", record_data=recording
    )
    ftp = ftps_client(proxy.address, pki.proxy_ca.cert)
    ftp.auth()
    ftp.login("diag", "diag")
    ftp.prot_p()
    assert download(ftp, "big.bin") == files[1]
    ftp.quit()
    proxy.wait_for("session.close")
    kept = [e for e in proxy.events if e["event"] == "transfer.data"]
    if not record_tls:
        assert kept == [] and not (tmp_path / "data").exists()
        return
    assert len(kept) == 1 and not kept[0]["truncated"]
    data = Path(kept[0]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == files[1]
