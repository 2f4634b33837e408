"""`python -m bench --quick` against pyftpdlib with tiny sizes exits 0 and writes its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_bench_quick_pyftpdlib(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "pyftpdlib", "--output", str(out),
         "--size", "4MiB", "--clients", "5", "--idle", "50", "--noops", "100",
         "--slow-size", "5MiB"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for title in ("Throughput", "NOOP round trip", "Concurrency", "Idle sessions", "Slow reader",
                  "Targets"):
        assert title in proc.stdout
    text = out.read_text()
    assert "| pyftpdlib | RETR 4 MiB | passive |" in text
    assert "## Machine" in text and "python -m bench --quick" in text
    assert "FAILED" not in text


@pytest.mark.timeout(90)
def test_bench_capture_quick(tmp_path: Path) -> None:
    """`python -m bench.capture` on a 4 MiB capture times ftpdiag (and tshark when present)
    and writes only its own section of the report, keeping the others."""
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Command\n\nkept\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.capture", "--size", "4MiB", "--runs", "1",
         "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=80, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert "## Command\n\nkept\n" in text
    assert "| loopback, 64 KiB segments: RETR 4 MiB |" in text
    assert text.count("## Packet captures") == 1


@pytest.mark.timeout(90)
def test_bench_metrics_quick(tmp_path: Path) -> None:
    """`python -m bench.metrics` measures NOOPs through ftpdiag with and without a scraper of
    its --metrics endpoint, scrapes it for real, and writes only its own section."""
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Command\n\nkept\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.metrics", "--noops", "400", "--runs", "1",
         "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=80, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert "## Command\n\nkept\n" in text and text.count("## Metrics scraping") == 1
    assert "(0 scrapes)" not in text and "| ratio scraped / quiet |" in text
