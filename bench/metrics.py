"""``python -m bench.metrics``: what scraping ``--metrics`` costs the relay.

ftpdiag runs with ``--metrics`` in front of pyftpdlib; the same client measures NOOP round
trips through it with nobody scraping, and with a scraper fetching ``/metrics`` ten times a
second, runs interleaved. The counters are updated from every record either way; scraping
adds the rendering of the exposition in the proxy's reactor. The figures go to the "Metrics
scraping" section of docs/benchmarks.md; the other sections are left as they are.
"""

from __future__ import annotations

import argparse
import ftplib
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.capture import write_section
from bench.procs import REPO, start_ftpdiag, start_pyftpdlib
from bench.report import git_revision, loadavg

SECTION = "## Metrics scraping: NOOP round trip with and without a 10 Hz scraper"


def noop_median_us(host: str, port: int, user: str, password: str, count: int) -> float:
    ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=10)
    ftp.login(user, password)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        ftp.voidcmd("NOOP")
        times.append(time.perf_counter() - started)
    ftp.quit()
    return statistics.median(times) * 1e6


def scrape(url: str, stop: threading.Event, counter: list[int]) -> None:
    while True:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
        counter[0] += 1
        if stop.wait(0.1):
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__)
    p.add_argument("--noops", type=int, default=2000, help="NOOPs per run (2000)")
    p.add_argument("--runs", type=int, default=5, help="runs of each kind, interleaved (5)")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    command = "python -m bench.metrics" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    load_start, revision = loadavg(), git_revision()
    with tempfile.TemporaryDirectory(prefix="ftpdiag-bench-metrics-") as tmp:
        work = Path(tmp)
        server = start_pyftpdlib(work)
        proxy = start_ftpdiag(server, work, "metrics", ["--metrics", "127.0.0.1:0"])
        try:
            records = [json.loads(line) for line in proxy.log_path.read_text().splitlines()]
            listen = next(r["listen"] for r in records if r["event"] == "metrics.listen")
            url = f"http://{listen}/metrics"
            quiet: list[float] = []
            scraped: list[float] = []
            scrapes = [0]
            for _ in range(args.runs):
                quiet.append(
                    noop_median_us(proxy.host, proxy.port, server.user, server.password, args.noops)
                )
                stop = threading.Event()
                scraper = threading.Thread(target=scrape, args=(url, stop, scrapes), daemon=True)
                scraper.start()
                scraped.append(
                    noop_median_us(proxy.host, proxy.port, server.user, server.password, args.noops)
                )
                stop.set()
                scraper.join(10)
        finally:
            proxy.stop()
            server.stop()
    a, b = statistics.median(quiet), statistics.median(scraped)
    text = "\n".join([
        SECTION,
        "",
        "Written by `python -m bench.metrics` (`bench/metrics.py`); rerun it rather than editing.",
        "",
        "```",
        command,
        "```",
        "",
        "| ftpdiag --metrics, pyftpdlib | NOOP median (µs), median of runs | runs |",
        "|---|---|---|",
        f"| nobody scraping | {a:.0f} | {', '.join(f'{v:.0f}' for v in quiet)} |",
        f"| scraped at 10 Hz ({scrapes[0]} scrapes) | {b:.0f} | "
        f"{', '.join(f'{v:.0f}' for v in scraped)} |",
        f"| ratio scraped / quiet | {b / a:.2f} | |",
        "",
        f"At {revision}; load average {load_start} at the start.",
        "",
    ])  # fmt: skip
    print(text)
    write_section(args.output, text, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
