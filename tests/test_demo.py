"""``ftpdiag demo`` as a user runs it: a subprocess that finishes quickly and shows the 220
greeting and the mid-transfer 426 diagnosed inline."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(60)


def test_demo_shows_greeting_and_426() -> None:
    """The demo exits 0 within seconds and prints the 220 and the 426 with their diagnoses."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "demo"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 15
    out = done.stdout
    assert "← 220 " in out and "✓ Service ready for new user" in out
    assert "← 426 Transfer aborted; 1048576 bytes transmitted." in out
    assert "✗ Transfer aborted (426): RETR big.bin after 1048576 bytes of 8388608 (12.5 %)" in out
    assert "premature EOF" in out and "Fix: Retry and resume" in out and "REST 1048576" in out
    assert "Most likely cause: Transfer aborted (426)" in out
    assert "\x1b[" not in out  # not a terminal: no colours
    # The diagnosis hangs under the transfer it explains.
    assert out.index("← 426") < out.index("✗ Transfer aborted (426)") < out.index("→ QUIT")


def test_demo_verbose_explains_every_reply() -> None:
    """With -v every reply also shows its catalog meaning."""
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "demo", "-v"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    replies = [line for line in done.stdout.splitlines() if "← " in line]
    meanings = [line for line in done.stdout.splitlines() if line.startswith(" " * 15 + "· ")]
    assert len(replies) >= 8 and len(meanings) >= len(replies)
    assert "Transfer aborted (426)" in done.stdout
