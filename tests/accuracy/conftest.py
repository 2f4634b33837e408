"""The accuracy matrix's shared parts: the servers (one of each for the whole run), the judge of
a proxy's sessions, and the two figures printed at the end of the test run:

* false alarms / healthy sessions — sessions in which everything the user asked for worked, yet
  an error was diagnosed or a root cause named;
* right root causes / scenarios — sessions made to fail in a known way whose root cause names
  that fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.sandbox import ServerThread
from ftpdiag.testing import ProxyHandle
from tests.interop.servers import (
    FTPServer,
    ProftpdServer,
    PureftpdServer,
    VsftpdServer,
    running,
)

SETTLE_TIMEOUT = 15.0
#: How long the proxy must stay without a new session before the count is final (lftp's pget
#: opens its extra connections a moment after the first).
QUIET = 0.3


@dataclass
class Tally:
    """The figures of this run; each test adds what it measured."""

    healthy: int = 0
    false_alarms: list[str] = field(default_factory=list)
    scenarios: int = 0
    wrong: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        right = self.scenarios - len(self.wrong)
        out = [
            f"false alarms / healthy sessions: {len(self.false_alarms)} / {self.healthy}",
            f"right root causes / scenarios: {right} / {self.scenarios}",
        ]
        out += [f"  false alarm: {item}" for item in self.false_alarms]
        out += [f"  wrong root cause: {item}" for item in self.wrong]
        return out


TALLY = Tally()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures when the matrix ran."""
    if TALLY.healthy or TALLY.scenarios:
        terminalreporter.section("ftpdiag diagnosis accuracy")
        for line in TALLY.lines():
            terminalreporter.write_line(line)


def sessions(proxy: ProxyHandle, at_least: int = 1) -> list[list[dict[str, Any]]]:
    """The events of each session of ``proxy``, once every session that opened has its
    summary and no new one opened for a moment (bounded)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    quiet_since = time.monotonic()
    last = -1
    while True:
        events = list(proxy.events)
        opened = {e["session"] for e in events if e["event"] == "session.open"}
        done = {e["session"] for e in events if e["event"] == "session.summary"}
        if len(opened) != last:
            last, quiet_since = len(opened), time.monotonic()
        settled = opened == done and len(opened) >= at_least
        if settled and time.monotonic() - quiet_since >= QUIET:
            break
        assert time.monotonic() < deadline, f"sessions did not end: {sorted(opened - done)}"
        time.sleep(0.02)
    by_session: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if "session" in event:
            by_session.setdefault(event["session"], []).append(event)
    return list(by_session.values())


def alarms(session: list[dict[str, Any]]) -> list[str]:
    """What a healthy session must not have: errors and a root cause."""
    found = [
        f"{d['rule']} ({d.get('code')}: {d['title']})"
        for d in session
        if d["event"] == "diagnosis" and d["severity"] == "error"
    ]
    summary = next(e for e in session if e["event"] == "session.summary")
    if summary["root_cause"]:
        found.append(f"root cause {summary['root_cause']['rule']}")
    return found


def summary_of(session: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in session if e["event"] == "session.summary")


def transcript(session: list[dict[str, Any]]) -> str:
    """A compact account of a session, for assertion messages."""
    lines = []
    for e in session:
        if e["event"] == "command":
            lines.append(f"> {e['verb']} {e.get('arg') or ''}")
        elif e["event"] in ("reply", "proxy.reply"):
            lines.append(f"< {e['code']} {str(e.get('text'))[:60]}")
        elif e["event"] == "diagnosis":
            lines.append(f"  [{e['severity']}] {e['rule']}")
        elif e["event"] in ("transfer.end", "session.close", "data.failed"):
            keep = ("outcome", "bytes", "client_end", "server_end", "first_closed", "aborted_by")
            keep += ("reason",)
            lines.append(f"  {e['event']} " + " ".join(f"{k}={e.get(k)}" for k in keep if k in e))
        elif e["event"] == "session.summary":
            lines.append(f"  summary: {e['outcome_text']}; root cause {e['root_cause']}")
    return "\n".join(lines)


@dataclass
class Served:
    """A running server as the matrix needs it: address, account, the user's directory."""

    name: str
    address: tuple[str, int]
    user: str
    password: str
    root: Path


def _real(server: FTPServer) -> Served:
    return Served(server.name, (server.host, server.port), server.user, server.password,
                  server.root)  # fmt: skip


@pytest.fixture(scope="session")
def vsftpd() -> Iterator[VsftpdServer]:
    with running(VsftpdServer) as srv:
        yield srv


@pytest.fixture(scope="session")
def proftpd() -> Iterator[ProftpdServer]:
    with running(ProftpdServer) as srv:
        yield srv


@pytest.fixture(scope="session")
def pureftpd() -> Iterator[PureftpdServer]:
    with running(PureftpdServer) as srv:
        yield srv


@pytest.fixture(scope="session")
def pyftpdlib_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """pyftpdlib as ``ftpdiag proxy`` runs it without ``--upstream``: the built-in sandbox."""
    root = tmp_path_factory.mktemp("pyftpdlib-root")
    with ServerThread(root) as srv:
        yield srv


SERVERS = ["pyftpdlib", "vsftpd", "proftpd", "pure-ftpd"]


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest) -> Served:
    """Each server in turn, for the healthy matrix."""
    if request.param == "pyftpdlib":
        srv: ServerThread = request.getfixturevalue("pyftpdlib_server")
        return Served("pyftpdlib", srv.address, srv.user, srv.password, srv.root)
    fixture = {"vsftpd": "vsftpd", "proftpd": "proftpd", "pure-ftpd": "pureftpd"}[request.param]
    return _real(request.getfixturevalue(fixture))
