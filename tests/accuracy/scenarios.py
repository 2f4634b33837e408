"""What the failure scenarios share: real servers with one setting changed, the judge that
counts a scenario right when its headline names the fault and the setting, and small client
helpers."""

from __future__ import annotations

import contextlib
import ftplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ftpdiag.testing import ProxyHandle
from tests.accuracy.conftest import TALLY, sessions, summary_of, transcript
from tests.fake_servers import FakeFTPServer
from tests.interop.servers import (
    ProftpdServer,
    PureftpdServer,
    VsftpdServer,
    running,
)

Proxy = Callable[..., ProxyHandle]
TIMEOUT = 10


# ---- servers with one setting changed -----------------------------------------------------------
class Vsftpd(VsftpdServer):
    """vsftpd with some vsftpd.conf lines replaced; ``greets=False`` for a server that does
    not send a plain 220 (implicit TLS): ready once its port accepts connections."""

    def __init__(self, conf: dict[str, str], greets: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conf, self.greets = conf, greets

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        path = Path(cmd[1])
        lines = dict(line.split("=", 1) for line in path.read_text().splitlines() if line)
        lines.update(self.conf)
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return cmd

    def wait_ready(self, timeout: float = 10.0) -> str:
        if self.greets:
            return super().wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return ""
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"vsftpd did not listen on {self.port}:\n{self.log_text()}")


class Proftpd(ProftpdServer):
    """ProFTPD with extra directives appended to proftpd.conf."""

    def __init__(self, extra: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extra = extra

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        conf = Path(cmd[-1])
        conf.write_text(conf.read_text() + self.extra + "\n")
        return cmd


class Pureftpd(PureftpdServer):
    """Pure-FTPd with flags replaced (``{"-C": "1"}``) or added."""

    def __init__(self, flags: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flags = flags

    def _prepare(self) -> list[str]:
        cmd = super()._prepare()
        for flag, value in self.flags.items():
            if flag in cmd:
                cmd[cmd.index(flag) + 1] = value
            else:
                cmd += [flag, value]
        return cmd


# ---- the judge ----------------------------------------------------------------------------------
def headline(session: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the session's summary puts first: its root cause, else its top problem."""
    summary = summary_of(session)
    if summary["root_cause"]:
        rule = summary["root_cause"]["rule"]
    elif summary["diagnoses"]:
        rule = summary["diagnoses"][0]["rule"]
    else:
        return None
    return next(e for e in session if e["event"] == "diagnosis" and e["rule"] == rule)


def judge(
    name: str, proxy: ProxyHandle, rule: str, remedy: str, *, root_cause: bool = True
) -> None:
    """Count the scenario; its last session's headline must be ``rule`` with ``remedy`` in its
    fix (and a root cause, unless the proxy saved the session: ``root_cause=False``)."""
    session = sessions(proxy)[-1]
    TALLY.scenarios += 1
    found = headline(session)
    summary = summary_of(session)
    right = (
        found is not None
        and found["rule"] == rule
        and remedy in found["remedy"]
        and (summary["root_cause"] is not None) == root_cause
    )
    if not right:
        got = found["rule"] if found else None
        TALLY.wrong.append(f"{name}: expected {rule}, got {got}")
    assert right, f"{name}: expected {rule} ({remedy!r}):\n{transcript(session)}"


def login(proxy: ProxyHandle, user: str, password: str) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(proxy.host, proxy.port)
    ftp.login(user, password)
    return ftp


def bye(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (ftplib.Error, OSError, EOFError):
        ftp.close()


# ---- servers by name ----------------------------------------------------------------------------
@contextlib.contextmanager
def any_server(name: str, tmp_path: Path) -> Iterator[tuple[tuple[str, int], str, str]]:
    """pyftpdlib or a real server by name, yielding (address, user, password)."""
    if name == "pyftpdlib":
        root = tmp_path / "root"
        root.mkdir()
        with FakeFTPServer(root) as fake:
            yield fake.address, fake.user, fake.password
        return
    cls = {"vsftpd": VsftpdServer, "proftpd": ProftpdServer, "pure-ftpd": PureftpdServer}[name]
    with running(cls) as srv:
        yield (srv.host, srv.port), srv.user, srv.password
