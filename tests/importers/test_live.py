"""Live: a real client's own log of a real failure, analysed alone, names the same root cause
as the proxy that watched the same session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ftpdiag import importers
from ftpdiag.analyze import analyze_records
from ftpdiag.testing import ProxyHandle
from tests.fake_servers import FakeFTPServer, make_file
from tests.interop.servers import VsftpdServer, running, unavailable

pytestmark = pytest.mark.timeout(90)
PASSWORD = "live-secret-pw"
WRONG = "live-wrong-pw"
TNFTP_SCRIPT = "open {host} {port}\nuser user {pw}\nget {path} {out}\nquit\n"
SCRIPT = """
import ftplib
ftp = ftplib.FTP()
ftp.connect("{host}", {port}, timeout=5)
ftp.login("user", "{pw}")
ftp.retrbinary("RETR {path}", lambda chunk: None)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeFTPServer]:
    """A pyftpdlib server with one file; the failures come from wrong passwords and names."""
    make_file(tmp_path / "root", "file.bin", 4096)
    with FakeFTPServer(tmp_path / "root", password=PASSWORD) as srv:
        yield srv


def _client(name: str, host: str, port: int, pw: str, path: str, tmp: Path) -> list[str]:
    """The command line of ``name`` with its debug output on (tnftp reads its script from
    standard input: see :data:`TNFTP_SCRIPT`)."""
    if shutil.which(name if name != "python" else sys.executable) is None:
        unavailable(f"{name} is not installed (scripts/test.sh installs it)")
    if name == "curl":
        url = f"ftp://{host}:{port}/{path}"
        return ["curl", "-v", "-sS", "--max-time", "10", "-u", f"user:{pw}", url, "-o", "-"]
    if name == "tnftp":
        return ["tnftp", "-n", "-v"]
    if name == "lftp":
        script = f"set net:max-retries 1; set net:timeout 5; get {path} -o {tmp / 'out'}; bye"
        return ["lftp", "-d", "-e", script, "-u", f"user,{pw}", f"ftp://{host}:{port}"]
    (tmp / "client.py").write_text(SCRIPT.format(host=host, port=port, pw=pw, path=path))
    return [sys.executable, str(tmp / "client.py")]


def _root_cause(records: list[dict[str, object]]) -> object:
    summaries = [r for r in records if r["event"] == "session.summary"]
    assert len(summaries) == 1
    cause = summaries[0]["root_cause"]
    return cause["rule"] if isinstance(cause, dict) else None


def _live_root_cause(proxy: ProxyHandle) -> object:
    """The root cause of the proxy's (one) session, once its summary is logged."""
    deadline = time.monotonic() + 10
    while not [e for e in list(proxy.events) if e["event"] == "session.summary"]:
        assert time.monotonic() < deadline, "the proxy's session did not end"
        time.sleep(0.05)
    return _root_cause(list(proxy.events))


@pytest.mark.parametrize(
    ("client", "pw", "path", "rule"),
    [
        ("curl", WRONG, "file.bin", "login.failed"),
        ("curl", PASSWORD, "missing.txt", "file.not_found"),  # curl quits after SIZE's 550
        ("lftp", PASSWORD, "missing.txt", "file.not_found"),
        ("python", WRONG, "file.bin", "login.failed"),
        ("python", PASSWORD, "missing.txt", "file.not_found"),
        ("tnftp", WRONG, "file.bin", "login.failed"),
        ("tnftp", PASSWORD, "missing.txt", "file.not_found"),
    ],
)
def test_client_log_gives_the_proxy_root_cause(
    server: FakeFTPServer,
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tmp_path: Path,
    client: str,
    pw: str,
    path: str,
    rule: str,
) -> None:
    """The client's output through the proxy, analysed offline, has the proxy's root cause."""
    proxy = ftpdiag_proxy(server.address)
    cmd = _client(client, proxy.host, proxy.port, pw, path, tmp_path)
    script = TNFTP_SCRIPT.format(
        host=proxy.host, port=proxy.port, pw=pw, path=path, out=tmp_path / "out"
    )
    done = subprocess.run(
        cmd,
        input=script.encode() if client == "tnftp" else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
        check=False,
    )
    # tnftp reads a script and exits 0 whatever the server said
    assert done.returncode != 0 or client == "tnftp", done.stdout.decode(errors="replace")
    live = _live_root_cause(proxy)
    found = importers.read(done.stdout)
    assert found is not None, done.stdout.decode(errors="replace")
    offline = _root_cause(analyze_records([r for s in found[1] for r in s]))
    assert offline == live == rule
    assert PASSWORD.encode() not in repr(found[1]).encode() and WRONG not in repr(found[1])


@pytest.mark.parametrize(("client", "rule"), [("curl", "tls.required"), ("lftp", "tls.required")])
def test_real_server_refusing_plain_ftp(
    ftpdiag_proxy: Callable[..., ProxyHandle], tmp_path: Path, client: str, rule: str
) -> None:
    """vsftpd that forces TLS for logins: the plain client's own log says what the proxy says."""
    with running(VsftpdServer, tls=True) as srv:
        proxy = ftpdiag_proxy((srv.host, srv.port))
        cmd = _client(client, proxy.host, proxy.port, srv.password, "file.bin", tmp_path)
        if client == "lftp":  # lftp would negotiate TLS on its own: keep it plain
            cmd[3] = "set ftp:ssl-allow no; " + cmd[3]
        done = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False
        )
        live = _live_root_cause(proxy)
    found = importers.read(done.stdout)
    assert found is not None, done.stdout.decode(errors="replace")
    offline = _root_cause(analyze_records(found[1][-1]))  # curl's last connection is the login
    assert offline == live == rule
    assert srv.password not in repr(found[1])
