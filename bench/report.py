"""Machine facts, the terminal table, and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.figures import Context, Table, Target
from bench.procs import FTP_PROXY, REPO, tool_version


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_facts(load_at_start: str = "", rev_at_start: str = "") -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    mem = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = ""
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    vsftpd = shutil.which("vsftpd", path=os.environ.get("PATH", "") + ":/usr/sbin")
    facts = [
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("OS", os_name),
        ("kernel", platform.release()),
        ("load average (1/5/15 min) at start / at end", f"{load_at_start} / {loadavg()}"),
        ("Python", platform.python_version()),
        ("Twisted", pkg("twisted")),
        ("pyftpdlib", pkg("pyftpdlib")),
        ("ftpdiag", f"{pkg('ftpdiag')} (git {revisions(rev_at_start, git_revision())})"),
        ("vsftpd", tool_version([vsftpd, "-v"], stdin_is_stdout=True) if vsftpd else "not found"),
        ("curl", tool_version(["curl", "--version"])),
        ("ftp-proxy", tool_version([FTP_PROXY, "-V"]) if os.access(FTP_PROXY, os.X_OK)
         else "not installed"),
    ]
    return facts


def revisions(start: str, end: str) -> str:
    if not start or start == end:
        return end
    return f"{start} at start, {end} at the end: the code changed during the run"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ftpdiag"], cwd=REPO,
                               capture_output=True, text=True, timeout=10,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev or 'unknown'}{' + uncommitted changes in ftpdiag/' if dirty else ''}"


def text_table(table: Table) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    out = [table.title, line(table.columns), line(["-" * w for w in widths])]
    out += [line(row) for row in table.rows]
    out += [f"  note: {n}" for n in table.notes]
    return "\n".join(out)


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out)


def summary_rows(targets: list[Target]) -> list[list[str]]:
    return [[t.name, t.server + ("" if t.headline else " (reference)"), t.value, t.verdict]
            for t in targets]


def terminal(tables: list[Table], ctx: Context, seconds: float) -> str:
    parts = [text_table(t) for t in tables]
    if ctx.targets:
        summary = Table("Targets", ["target", "server", "value", "verdict"],
                        summary_rows(ctx.targets))
        parts.append(text_table(summary))
    if ctx.notes:
        parts.append("Notes:\n" + "\n".join(f"  - {n}" for n in ctx.notes))
    if ctx.errors:
        parts.append("FAILED (wrong bytes or failed sessions):\n"
                     + "\n".join(f"  - {e}" for e in ctx.errors))
    parts.append(f"took {seconds:.0f} s")
    return "\n\n".join(parts)


METHOD = """\
- Everything runs on 127.0.0.1 on this one machine: the servers, the proxy, the clients.
  Client, proxy and server share the same CPUs, so the ratios are what the proxy costs when
  it competes with both ends for CPU, as it does on a small box.
- The proxy is `python -m ftpdiag proxy --listen 127.0.0.1:0 --upstream SERVER
  --log-file <tmp>.jsonl --log-format json -q` as a subprocess (JSON logging to a file on,
  RLIMIT_NOFILE raised to 65536). Figures that measure memory start a fresh proxy.
- vsftpd is started by the interop harness (`tests/interop/servers.py`, local user via PAM,
  chrooted), with a 1,500-port passive range, protocol logging off and the transfer log on.
  pyftpdlib 2 runs in its own process (`bench/pyftpd.py`, async, sendfile for RETR).
- Throughput: a file of random bytes (os.urandom) made once; curl with `--ftp-pasv` or
  `--ftp-port 127.0.0.1` (curl tries EPSV/EPRT first); RETR to /dev/null, STOR from the
  file. MiB/s = size / (curl `time_total` − `time_pretransfer`), i.e. the data phase.
  Before the timed runs, one untimed transfer per mode and route is checked by SHA-256 (RETR:
  curl's output hashed on the fly; STOR: the stored file hashed); every timed transfer is
  checked by size. Runs alternate the routes in rotating order.
- NOOP latency: a raw-socket Python client (TCP_NODELAY), logged in, 50 warm-up NOOPs, then
  the timed NOOPs one after another; median and p99 per run, the table shows the medians
  over runs; "added" = proxy − direct. Round trips on loopback swing with where the
  scheduler puts client and proxy (same core or not); the direct baseline itself is
  bimodal on this machine (about 8 µs when client and server take turns on one core, 60-70 µs
  when they wake each other across cores), so "added" swings with it. The proxy's CPU per
  NOOP (utime+stime delta / NOOPs, login included) is the steadier figure.
- Concurrency: an asyncio raw-socket client in the benchmark process starts N sessions at
  once; at most 16 are between connect() and their 220 greeting at any moment (vsftpd listens
  with a backlog of 32, the proxy with 1024: with SYN cookies on, a burst
  past the backlog leaves clients "connected" but never greeted); each session logs in,
  does TYPE I + PASV + RETR of the small file 5 times (bytes counted) and QUITs.
  sessions/s = N / wall time. Proxy CPU = utime+stime delta of the proxy process
  (/proc/PID/stat) over the N sessions.
- Idle sessions: a fresh proxy, one warm-up session, baseline VmRSS; then N logged-in
  sessions (50 logins at a time), a NOOP on each to prove it is alive, VmRSS again.
  KiB/session = (RSS with sessions − baseline) / N.
- Slow reader: a fresh proxy; one PASV RETR by a raw client that sleeps to hold its read
  rate; VmHWM of the proxy (/proc/PID/status) sampled during and after; SHA-256 checked.
"""


def markdown(tables: list[Table], ctx: Context, facts: list[tuple[str, str]], command: str,
             started: str, seconds: float, ftp_proxy_note: str) -> str:
    parts = [
        "# Benchmarks",
        "Written by `python -m bench` (the `bench/` package); rerun it rather than editing "
        "this file.",
        "## Command\n\n```\n" + command + "\n```\n\n"
        + f"Started {started}, took {seconds:.0f} s.",
        "## Machine\n\n" + md_table(["fact", "value"], [[k, v] for k, v in facts]),
    ]
    if ctx.errors:
        parts.append("## FAILED\n\nWrong bytes or failed sessions (the run exited non-zero):\n\n"
                     + "\n".join(f"- {e}" for e in ctx.errors))
    if ctx.targets:
        parts.append("## Targets\n\nThe headline server is "
                     f"**{ctx.headline}**; other servers are reference rows.\n\n"
                     + md_table(["target", "server", "value", "verdict"],
                                summary_rows(ctx.targets)))
    parts.append("## Results")
    for table in tables:
        body = f"### {table.title}\n\n" + md_table(table.columns, table.rows)
        if table.notes:
            body += "\n\n" + "\n".join(f"- {n}" for n in table.notes)
        parts.append(body)
    parts.append("## Reference proxy: Debian's ftp-proxy\n\n" + ftp_proxy_note)
    if ctx.notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in ctx.notes))
    parts.append("## Method\n\n" + METHOD)
    if ctx.raw:
        parts.append("## Raw runs\n\n```\n" + "\n".join(ctx.raw) + "\n```")
    return "\n\n".join(parts) + "\n"
