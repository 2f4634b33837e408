"""The ftpdiag pytest plugin: run a real ftpdiag proxy in front of any FTP server in a test,
and assert on what it diagnosed.

Registered through the ``pytest11`` entry point, so ``pip install ftpdiag`` makes these
fixtures available to any test suite:

- ``ftpdiag_proxy``: a factory ``ftpdiag_proxy(upstream, **options) -> ProxyHandle``; every
  proxy it starts is stopped at the end of the test.
- ``ftpdiag_sandbox``: a factory that serves a directory with a pyftpdlib handler class (yours,
  e.g. one that misbehaves) on 127.0.0.1 in its own thread.
- ``ftpdiag_replay``: a factory ``ftpdiag_replay(path, session=None, **options) -> ReplayHandle``
  that serves a recorded session again (``ftpdiag replay``); a command the recording did not
  expect fails the test, showing the expected and the actual command.

The Twisted reactor runs once per process in a daemon thread; blocking clients (ftplib, curl)
run in the test's own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import Address
from ftpdiag.proxy.access import AccessPolicy
from ftpdiag.proxy.data import DataTimeouts
from ftpdiag.proxy.recording import DataRecording
from ftpdiag.proxy.tls import ProxyTLS
from ftpdiag.proxy.upstream import Resolver

if TYPE_CHECKING:
    from ftpdiag.replay.script import Script

_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None


def _reactor() -> Any:
    """The global reactor, running in a daemon thread (started on first use)."""
    global _reactor_thread
    from twisted.internet import reactor

    with _reactor_lock:
        if _reactor_thread is None:
            _reactor_thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="ftpdiag-reactor",
                daemon=True,
            )
            _reactor_thread.start()
    return reactor


def in_reactor(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in the reactor thread and return its result (Deferreds are waited for)."""
    from twisted.internet import threads

    return threads.blockingCallFromThread(_reactor(), fn, *args, **kwargs)


@dataclass
class _Listening:
    """Something a client connects to in a test."""

    address: Address

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]


@dataclass
class ProxyHandle(_Listening):
    """A running proxy: its address, every event it logged, and helpers to wait and assert.

    The proxy sends a relayed line first and logs it right after, in the same reactor call;
    so a client can hold a reply a few microseconds before its record exists. ``events``
    therefore first lets the reactor finish what it is doing: everything the proxy did before
    the moment ``events`` is read is in the list."""

    _events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _stop: Callable[[], Any] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        thread = _reactor_thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            in_reactor(lambda: None)
        return self._events

    def record(self, event: str, fields: dict[str, Any]) -> None:
        self._events.append({"event": event, **fields})

    def wait_for(self, event: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Block until an event with these field values was logged (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in list(self._events):
                if ev["event"] == event and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            if time.monotonic() > deadline:
                seen = sorted({e["event"] for e in self._events})
                raise AssertionError(f"no {event} {match} within {timeout} s; events seen: {seen}")
            time.sleep(0.01)

    def diagnoses(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == "diagnosis" and (rule is None or e["rule"] == rule)
        ]

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            in_reactor(stop)


def start_proxy_thread(
    upstream: Address,
    *,
    session: SessionConfig | None = None,
    data: DataTimeouts | None = None,
    access: AccessPolicy | None = None,
    resolver: Resolver | None = None,
    connect_timeout: float = 5.0,
    listen: Address = ("127.0.0.1", 0),
    tls: ProxyTLS | None = None,
    record_data: DataRecording | None = None,
    **session_options: Any,
) -> ProxyHandle:
    """Start a proxy in the reactor thread; ``session_options`` are ``SessionConfig`` fields."""
    from ftpdiag.proxy.control import ProxySettings
    from ftpdiag.proxy.server import start_proxy
    from ftpdiag.proxy.upstream import UpstreamConnector

    config = replace(session or SessionConfig(), **session_options)
    settings = ProxySettings(
        upstream=upstream,
        session=config,
        data=data or DataTimeouts(),
        access=access or AccessPolicy(),
        tls=tls or ProxyTLS(),
        record_data=record_data,
    )
    handle = ProxyHandle(address=listen)

    def start() -> Any:
        reactor = _reactor()
        connector = UpstreamConnector(reactor, resolver, timeout=connect_timeout)
        running = start_proxy(
            reactor, listen, settings, handle.record, connector, stop_on_shutdown=False
        )
        handle.address = running.host_port
        handle._stop = running.stop
        return running

    in_reactor(start)
    return handle


def assert_diagnosed(
    events: list[dict[str, Any]] | ProxyHandle, rule: str, code: int | None = None, **evidence: Any
) -> dict[str, Any]:
    """Return the first ``diagnosis`` with this rule (and code, and evidence values), or fail
    with the list of what was diagnosed instead."""
    records = events.events if isinstance(events, ProxyHandle) else events
    found = [e for e in records if e.get("event") == "diagnosis"]
    for diagnosis in found:
        if diagnosis["rule"] != rule or (code is not None and diagnosis.get("code") != code):
            continue
        if all(diagnosis.get("evidence", {}).get(k) == v for k, v in evidence.items()):
            return diagnosis
    summary = [(d["rule"], d.get("code")) for d in found]
    raise AssertionError(f"no diagnosis {rule!r} code={code} {evidence}; diagnosed: {summary}")


@pytest.fixture
def ftpdiag_proxy() -> Iterator[Callable[..., ProxyHandle]]:
    """Factory fixture: ``ftpdiag_proxy(("127.0.0.1", port), upstream_mode="passive")``."""
    started: list[ProxyHandle] = []

    def factory(upstream: Address, **options: Any) -> ProxyHandle:
        handle = start_proxy_thread(upstream, **options)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


@pytest.fixture
def ftpdiag_sandbox(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory fixture: ``ftpdiag_sandbox(handler=MyHandler, **class_attrs)`` serves a fresh
    ``tmp_path`` subdirectory (user ``diag``/``diag`` and anonymous) and returns the running
    ``ServerThread`` (``.address``, ``.root``, ``.user``, ``.password``)."""
    from ftpdiag.sandbox import ServerThread

    servers: list[ServerThread] = []

    def factory(handler: Any = None, root: Path | None = None, **attrs: Any) -> ServerThread:
        directory = root or tmp_path / f"ftproot{len(servers)}"
        directory.mkdir(parents=True, exist_ok=True)
        kwargs = {"handler": handler} if handler is not None else {}
        server = ServerThread(directory, **kwargs, **attrs).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@dataclass
class ReplayHandle(_Listening):
    """A running replay: its address, and what it reported (``replay.*`` records)."""

    script: Script
    reports: list[dict[str, Any]] = field(default_factory=list)
    _stop: Callable[[], None] | None = None

    @property
    def mismatches(self) -> list[dict[str, Any]]:
        """Commands the recording did not expect (each answered 500)."""
        return [r for r in self.reports if r["event"] == "replay.unmatched"]

    def record(self, event: str, fields: dict[str, Any]) -> None:
        self.reports.append({"event": event, **fields})

    def stop(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()


def start_replay(
    source: Path | str | list[dict[str, Any]],
    session: str | None = None,
    *,
    listen: Address = ("127.0.0.1", 0),
    **options: Any,
) -> ReplayHandle:
    """Serve one recorded session of ``source`` (a file ``ftpdiag analyze`` reads, or its
    records); ``options`` are ``ReplayOptions`` fields (``timing``, ``speed``,
    ``keep_addresses``)."""
    from ftpdiag.analyze import read_records
    from ftpdiag.replay.script import build_script
    from ftpdiag.replay.server import ReplayOptions, ReplayServer

    records = source if isinstance(source, list) else read_records([str(source)])
    script = build_script(records, session)
    handle = ReplayHandle(address=listen, script=script)
    if not isinstance(source, list):
        options.setdefault("data_dir", Path(source).parent)
    server = ReplayServer(script, listen, ReplayOptions(**options), handle.record).start()
    handle.address = server.address
    handle._stop = server.stop
    return handle


_REPLAYS = pytest.StashKey[list[ReplayHandle]]()


@pytest.fixture
def ftpdiag_replay(request: pytest.FixtureRequest) -> Iterator[Callable[..., ReplayHandle]]:
    """Factory fixture: ``ftpdiag_replay("session.jsonl", session=None, timing="recorded")``
    serves the recorded server on 127.0.0.1 (``.address``); stopped at the end of the test."""
    started = request.node.stash.setdefault(_REPLAYS, [])

    def factory(
        source: Path | str | list[dict[str, Any]], session: str | None = None, **options: Any
    ) -> ReplayHandle:
        handle = start_replay(source, session, **options)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


def replay_failures(handles: list[ReplayHandle]) -> str:
    """What the replays of a test did not expect, one line per command (empty: all matched)."""
    return "\n".join(
        f"replay of session {h.script.session}: expected {m['expected'] or '(end of recording)'},"
        f" got {m['actual']}"
        for h in handles
        for m in h.mismatches
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test whose replay saw an unexpected command fails, even when its client coped with
    the 500 it got: the recording no longer describes what the test does."""
    report = yield
    failures = replay_failures(item.stash.get(_REPLAYS, [])) if call.when == "call" else ""
    if failures:
        text = f"the replayed server got commands it did not expect:\n{failures}"
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("ftpdiag replay", text))
    return report
