"""Long runs: thousands of sessions with small transfers through one proxy, about one in ten
killed mid-transfer by the client (RST or silent close), and afterwards nothing leaked:
descriptors back to the baseline, no session, pipe or listener left, memory stable.

The full run (5,000 sessions) is marked ``soak``; a 200-session version runs in the normal
suite.
"""

from __future__ import annotations

import ftplib
import gc
import io
import itertools
import threading
import time
import tracemalloc
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.proxy.data import DataTimeouts
from tests.fake_servers import FakeFTPServer, make_file
from tests.robustness.conftest import (
    TIMEOUT,
    ScriptedUpstream,
    fd_count,
    observe,
    observed_if_failing,
    own_sockets,
    rss_bytes,
    rst,
    sha256,
    silent_close,
    start_rig,
    wait_until,
)

#: Descriptors the process may hold beyond its baseline after a run (lazily created
#: resources of the reactor, the logging machinery, etc.).
FD_SLACK = 8
RSS_GROWTH_LIMIT = 30 * 2**20


BRIEF = ("client", "verb", "code", "reason", "side", "clean", "detail", "kind", "outcome",
         "error", "where", "bytes")


@dataclass
class Tally:
    """What the proxy reported, counted (keeping every event would itself grow memory); the
    events of live and of the last few sessions are kept in brief, to explain a failure."""

    events: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    internal_errors: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    recent: deque[list[tuple[str, dict[str, Any]]]] = field(
        default_factory=lambda: deque(maxlen=64)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        with self.lock:
            self.events[event] += 1
            if event == "session.close":
                self.reasons[str(fields["reason"])] += 1
            elif event == "proxy.internal_error":
                self.internal_errors.append(fields)
            sid = fields.get("session")
            if sid is None:
                return
            brief = {k: v for k, v in fields.items() if k in BRIEF}
            self.live.setdefault(sid, []).append((event, brief))
            if event == "session.summary":
                self.recent.append(self.live.pop(sid))

    def story(self, client: str) -> list[tuple[str, dict[str, Any]]]:
        """What the proxy logged for the session of ``client`` ("host:port"), if still known."""
        with self.lock:
            for events in [*self.recent, *self.live.values()]:
                if events and events[0][1].get("client") == client:
                    return list(events)
        return []


class SessionFailed(Exception):
    def __init__(self, stage: str, client: str, error: BaseException) -> None:
        super().__init__(f"at {stage} from {client}: {error!r}")
        self.client = client


def healthy(address: tuple[str, int], sha: str) -> None:
    """One normal session: log in, download the small file, check it, quit."""
    ftp = ftplib.FTP(timeout=TIMEOUT)
    stage, client = "connect", "?"
    try:
        ftp.connect(*address, timeout=TIMEOUT)
        assert ftp.sock is not None
        host, port = ftp.sock.getsockname()[:2]
        client = f"{host}:{port}"
        stage = "login"
        ftp.login("user", "secret")
        stage = "RETR"
        out = io.BytesIO()
        assert ftp.retrbinary("RETR small.bin", out.write).startswith("226")
        assert sha256(out.getvalue()) == sha
        stage = "QUIT"
        ftp.quit()
    except Exception as exc:
        raise SessionFailed(stage, client, exc) from exc
    finally:
        ftp.close()


def faulty(address: tuple[str, int], how: str) -> None:
    """A session whose client vanishes mid-download (RST or silent close of both channels)."""
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(*address, timeout=TIMEOUT)
    ftp.login("user", "secret")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    conn.settimeout(TIMEOUT)
    assert conn.recv(65536)
    sock, ftp.sock = ftp.sock, None
    if how == "rst":
        rst(conn)
        rst(sock)
    else:
        silent_close(conn)
        silent_close(sock)
    ftp.close()


def run_soak(tmp_path: Path, sessions: int, workers: int, fault_every: int = 10) -> dict[str, Any]:
    root = tmp_path / "root"
    root.mkdir()
    sha = make_file(root, "small.bin", 4096 + 7, seed=6)
    make_file(root, "big.bin", 2 * 1024 * 1024, seed=7)
    tally = Tally()
    with FakeFTPServer(root=root) as server:
        rig = start_rig(server.address, sink=tally, data=DataTimeouts(connect=5, drain=5))
        try:
            warm_up = max(20, sessions // 10)  # lazily created state and allocator pools
            for n in range(warm_up):
                healthy(rig.address, sha) if n % 10 else faulty(rig.address, "rst")
            wait_until(lambda: not rig.live(), TIMEOUT, "warm-up sessions closed")
            gc.collect()
            base_fds, base_rss = fd_count(), rss_bytes()
            base_listening = {s.local for s in own_sockets() if s.listening}

            counter = itertools.count()
            failures: list[str] = []
            done = Counter[str]()

            def worker() -> None:
                while (n := next(counter)) < sessions:
                    kind = "ok"
                    if n % fault_every == 0:
                        kind = "rst" if n // fault_every % 2 else "close"
                    try:
                        if kind == "ok":
                            healthy(rig.address, sha)
                        else:
                            faulty(rig.address, kind)
                        done[kind] += 1
                    except SessionFailed as exc:  # a healthy session must never fail
                        time.sleep(0.5)  # let the proxy finish logging that session
                        failures.append(f"session {n}: {exc}; proxy: {tally.story(exc.client)}")
                    except Exception as exc:
                        failures.append(f"session {n} ({kind}): {exc!r}")

            started = time.monotonic()
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(600)
            elapsed = time.monotonic() - started
            assert not any(t.is_alive() for t in threads), "client threads hung"
            assert not failures, failures[:5]

            wait_until(lambda: not rig.live(), 2 * TIMEOUT, "every session closed")
            opened = tally.events["session.open"]
            wait_until(lambda: tally.events["session.close"] == opened, TIMEOUT,
                       "a session.close for every session.open")
            assert opened == sessions + warm_up
            assert not tally.internal_errors, tally.internal_errors[:3]
            assert tally.events["session.summary"] == opened
            gc.collect()
            wait_until(lambda: fd_count() <= base_fds + FD_SLACK, 2 * TIMEOUT,
                       f"descriptors back near the baseline ({base_fds})")
            listening = {s.local for s in own_sockets() if s.listening}
            assert listening <= base_listening, listening - base_listening
            growth = rss_bytes() - base_rss
            assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB"
            return {
                "elapsed": elapsed,
                "done": dict(done),
                "reasons": dict(tally.reasons),
                "fd_delta": fd_count() - base_fds,
                "rss_growth_mib": growth / 2**20,
            }
        finally:
            rig.handle.stop()


def record(result: dict[str, Any], sessions: int) -> None:
    faults = result["done"].get("rst", 0) + result["done"].get("close", 0)
    observe(
        "Long runs",
        f"{sessions} sessions, {faults} killed mid-transfer by the client (RST / close)",
        "whole session",
        f"every healthy session verified ({result['elapsed']:.0f} s)",
        f"a `session.close` for each (reasons {result['reasons']}); descriptors "
        f"{result['fd_delta']:+d}, RSS {result['rss_growth_mib']:+.1f} MiB, no pipe or listener "
        "left",
    )


@pytest.mark.timeout(60)
def test_short_soak(tmp_path: Path) -> None:
    """200 sessions (every tenth killed mid-transfer) leave no descriptor, session, pipe or
    listener behind and no internal error."""
    result = run_soak(tmp_path, sessions=200, workers=4)
    assert result["done"] == {"ok": 180, "close": 10, "rst": 10}
    record(result, 200)


@pytest.mark.soak
@pytest.mark.timeout(400)
def test_soak(tmp_path: Path) -> None:
    """5,000 sessions (every tenth killed mid-transfer) leave no descriptor, session, pipe or
    listener behind, no internal error, and RSS grows by less than 30 MiB."""
    result = run_soak(tmp_path, sessions=5000, workers=4)
    assert result["done"] == {"ok": 4500, "close": 250, "rst": 250}
    assert result["elapsed"] < 300, result  # ~30-90 s; a hang detector, not a benchmark
    record(result, 5000)


@pytest.mark.timeout(60)
def test_long_session_memory_is_bounded(upstream: ScriptedUpstream) -> None:
    """One session with 1,000 small transfers holds no per-transfer memory in ftpdiag."""
    upstream.files["tiny.bin"] = b"t" * 100
    rig = start_rig(upstream.address, sink=lambda event, fields: None)
    client = ftplib.FTP(timeout=TIMEOUT)
    try:
        client.connect(*rig.address, timeout=TIMEOUT)
        client.login("long", "long-pw")
        for _ in range(50):
            client.retrbinary("RETR tiny.bin", io.BytesIO().write)
        gc.collect()
        tracemalloc.start(1)
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(1000):
                client.retrbinary("RETR tiny.bin", io.BytesIO().write)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        mine = tracemalloc.Filter(True, "*/ftpdiag/*")
        growth = sum(
            stat.size_diff
            for stat in after.filter_traces([mine]).compare_to(
                before.filter_traces([mine]), "filename"
            )
        )
        with observed_if_failing(
            "Long runs", "one session with 1,000 small transfers", "logged in",
            "every transfer fine", f"ftpdiag holds {growth / 1000:.0f} B per transfer until "
            "the session ends",
        ):
            assert growth < 100 * 1024, f"ftpdiag holds {growth / 1000:.0f} B per transfer"
        client.quit()
    finally:
        client.close()
        rig.handle.stop()
