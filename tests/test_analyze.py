"""``ftpdiag analyze``: the engine run offline over a saved log reproduces the live diagnoses."""

from __future__ import annotations

import ftplib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.analyze import analyze_records
from ftpdiag.testing import ProxyHandle
from tests.fake_servers import AbortTransferAfter, FakeFTPServer, make_file

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 5.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeFTPServer]:
    """A server that cuts downloads after 100000 bytes and advertises 127.0.0.2 in PASV."""
    root = tmp_path / "root"
    make_file(root, "big.bin", 1 << 20)
    with FakeFTPServer(
        root, faults=[AbortTransferAfter(100_000)], masquerade_address="127.0.0.2"
    ) as srv:
        yield srv


def _record_sessions(proxy: ProxyHandle) -> None:
    """Two sessions: a wrong password, then a download aborted mid-way (with SIZE)."""
    ftp = ftplib.FTP()
    ftp.connect(proxy.host, proxy.port, timeout=TIMEOUT)
    with pytest.raises(ftplib.error_perm):
        ftp.login("user", "wrong")
    ftp.quit()
    ftp = ftplib.FTP()
    ftp.connect(proxy.host, proxy.port, timeout=TIMEOUT)
    ftp.login("user", "secret")
    ftp.voidcmd("TYPE I")
    ftp.size("big.bin")
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        ftp.retrbinary("RETR big.bin", lambda _: None)
    ftp.quit()
    deadline = time.monotonic() + TIMEOUT
    while sum(e["event"] == "session.summary" for e in list(proxy.events)) < 2:
        assert time.monotonic() < deadline, "the sessions did not end"
        time.sleep(0.01)


def _write_log(events: list[dict[str, Any]], path: Path) -> None:
    """Write events the way ``--log-file`` does: one JSON object per line, with level and time."""
    stamp = datetime.now(UTC).isoformat()
    with path.open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps({"timestamp": stamp, "level": "info", **event}) + "\n")


def _produced(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Diagnoses and summaries, normalised through JSON as a log would store them."""
    kept = [r for r in records if r["event"] in ("diagnosis", "session.summary")]
    return [json.loads(json.dumps(r)) for r in kept]


def test_analyze_reproduces_live_diagnoses(
    server: FakeFTPServer, ftpdiag_proxy: Callable[..., ProxyHandle], tmp_path: Path
) -> None:
    """A recorded log analyzed by ``python -m ftpdiag analyze --format json`` gives the same
    diagnoses, evidence and summaries as the live proxy did."""
    proxy = ftpdiag_proxy(server.address)
    _record_sessions(proxy)
    live = _produced(proxy.events)
    rules = {r.get("rule") for r in live}
    assert {"login.failed", "pasv.nat_mismatch", "transfer.aborted"} <= rules

    log = tmp_path / "session.jsonl"
    _write_log(proxy.events, log)
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "analyze", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    offline = [json.loads(line) for line in done.stdout.splitlines()]
    assert offline == live

    text = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "analyze", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    aborted = next(r for r in live if r.get("rule") == "transfer.aborted")
    assert aborted["title"] in text.stdout and "Most likely cause" in text.stdout


def test_analyze_records_ignores_logged_diagnoses() -> None:
    """Diagnoses already in the log are recomputed, not copied or doubled."""
    records = [
        {
            "event": "session.open",
            "session": "a",
            "client": "c",
            "upstream": "u",
            "upstream_mode": "same",
        },
        {
            "event": "reply",
            "session": "a",
            "code": 220,
            "text": "hi",
            "command": None,
            "arg": None,
            "latency_ms": 1.0,
            "state": ["greeting"],
            "unsolicited": False,
            "mismatched_codes": [],
        },
        {"event": "diagnosis", "session": "a", "rule": "stale.rule"},
        {
            "event": "reply",
            "session": "b",
            "code": 421,
            "text": "Too many connections",
            "command": None,
            "arg": None,
            "latency_ms": 1.0,
            "state": ["greeting"],
            "unsolicited": False,
            "mismatched_codes": [],
        },
    ]
    out = analyze_records(records)
    assert [(r["session"], r["rule"]) for r in out] == [
        ("a", "greeting.ready"),
        ("b", "greeting.too_many"),
    ]


def test_analyze_bad_input(tmp_path: Path) -> None:
    """A missing file exits 2 with one line; lines that are not JSON are skipped with a warning."""
    missing = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "analyze", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    log = tmp_path / "mixed.jsonl"
    log.write_text(
        'not json\n{"event": "greeting.timeout", "session": "s", "seconds": 2}\n', encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "analyze", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "mixed.jsonl:1 is not JSON" in done.stderr
    assert json.loads(done.stdout)["rule"] == "greeting.missing"
