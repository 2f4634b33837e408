"""The five figures: throughput, NOOP latency, concurrency, idle sessions, slow reader.

Each figure function measures one server, direct and through the proxy, and returns a
:class:`Table` of formatted rows plus its :class:`Target` verdicts. Wrong bytes and failed
sessions are recorded with :meth:`Context.fail` (the run then exits non-zero); failures of
the reference proxy (Debian's ftp-proxy) are only noted, they are not ftpdiag's.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import clients, procs
from bench.procs import BenchError, Proxy, Server

MIB = 1 << 20
KIB = 1 << 10


@dataclass
class Settings:
    runs: int
    size: int
    noops: int
    clients: list[int]
    repeats: int
    small_size: int
    idle: int
    slow_size: int
    slow_rate: float
    ftp_proxy: bool


@dataclass
class DataFile:
    name: str
    path: Path
    size: int
    sha256: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    name: str
    server: str
    value: str
    verdict: str  # "PASS" or "MISS"
    headline: bool


@dataclass
class Context:
    settings: Settings
    workdir: Path
    files: dict[str, DataFile]
    headline: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.errors.append(message)
        log(f"ERROR: {message}")

    def target(self, name: str, server: str, value: str, ok: bool) -> str:
        verdict = "PASS" if ok else "MISS"
        self.targets.append(Target(name, server, value, verdict, server == self.headline))
        return verdict


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Route:
    """One way to reach the server: directly, through ftpdiag, or through a reference proxy."""

    label: str
    host: str
    port: int
    reference: bool = False


def _paths(server: Server, proxy: Proxy, ref: Proxy | None) -> list[Route]:
    paths = [Route("direct", server.host, server.port), Route("ftpdiag", proxy.host, proxy.port)]
    if ref is not None:
        paths.append(Route(ref.name, ref.host, ref.port, reference=True))
    return paths


def _rotate(items: list[Any], run: int) -> list[Any]:
    k = run % len(items)
    return items[k:] + items[:k]


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "—" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _url(server: Server, path: Route, name: str) -> str:
    return f"ftp://{server.user}:{server.password}@{path.host}:{path.port}/{name}"


def _problem(ctx: Context, path: Route, message: str) -> None:
    if path.reference:
        if message not in ctx.notes:
            ctx.notes.append(message)
            log(f"note: {message}")
    else:
        ctx.fail(message)


def _settle(sessions: int) -> None:
    """Before a run of many sessions, give TIME_WAIT sockets on ephemeral ports a little time
    to drain (other programs on the machine may make them faster than they drain: the wait
    is short and bounded)."""
    if sessions < 100:
        return
    waited = procs.wait_time_wait()
    if waited >= 1:
        log(f"waited {waited:.0f} s for TIME_WAIT sockets on ephemeral ports "
            f"({procs.time_wait_count()} now; limit {procs.TIME_WAIT_START})")


# ---- throughput -----------------------------------------------------------------------------


def throughput(ctx: Context, server: Server, proxy: Proxy, ref: Proxy | None) -> Table:
    s, big = ctx.settings, ctx.files["big"]
    size_text = human(big.size)
    timeout = big.size / (20 * MIB) + 60
    paths = _paths(server, proxy, ref)
    cells = [(op, mode) for op in ("RETR", "STOR") for mode in ("pasv", "port")]
    upload = "upload.bin"

    def transfer(op: str, mode: str, path: Route, verify: bool) -> float | None:
        what = f"{server.name} {op} {mode} via {path.label}"
        try:
            if op == "RETR":
                t = clients.curl_retr(_url(server, path, big.name), mode, verify=verify,
                                      timeout=timeout)
                if verify and t.sha256 != big.sha256:
                    raise BenchError(f"{what}: SHA-256 of the {t.nbytes} bytes received differs")
            else:
                dest = server.prepare_upload(upload)
                t = clients.curl_stor(_url(server, path, upload), mode, big.path, timeout=timeout)
                stored = dest.stat().st_size if dest.exists() else -1
                if stored != big.size:
                    raise BenchError(f"{what}: server stored {stored} bytes, want {big.size}")
                if verify and clients.sha256_file(dest) != big.sha256:
                    raise BenchError(f"{what}: SHA-256 of the stored file differs")
            if t.nbytes != big.size:
                raise BenchError(f"{what}: curl moved {t.nbytes} bytes, want {big.size}")
        except BenchError as exc:
            _problem(ctx, path, f"{what}: {exc}" if what not in str(exc) else str(exc))
            return None
        return big.size / t.seconds / MIB if t.seconds > 0 else None

    log(f"throughput {server.name}: verifying SHA-256 of one {size_text} transfer per mode/path")
    for op, mode in cells:
        for path in paths:
            transfer(op, mode, path, verify=True)
    samples: dict[tuple[str, str, str], list[float]] = {}
    for run in range(s.runs):
        log(f"throughput {server.name}: run {run + 1}/{s.runs}")
        for op, mode in cells:
            for path in _rotate(paths, run):
                rate = transfer(op, mode, path, verify=False)
                if rate is not None:
                    samples.setdefault((op, mode, path.label), []).append(rate)
    cols = ["server", "transfer", "mode", "direct MiB/s", "ftpdiag MiB/s", "ratio", "target"]
    if ref is not None:
        cols += [f"{ref.name} MiB/s", f"{ref.name} ratio"]
    table = Table(f"Throughput: {size_text} file, curl, median of {s.runs}", cols)
    for op, mode in cells:
        direct = _med(samples.get((op, mode, "direct"), []))
        ours = _med(samples.get((op, mode, "ftpdiag"), []))
        ratio = _ratio(ours, direct)
        name = f"throughput {op} {'passive' if mode == 'pasv' else 'active'} ≥ 0.8 of direct"
        verdict = ctx.target(name, server.name, _fmt(ratio, ".2f"),
                             ratio is not None and ratio >= 0.8)
        if ratio is not None and ratio < 0.6:
            verdict += " (below 0.6 floor)"
        row = [server.name, f"{op} {size_text}", "passive" if mode == "pasv" else "active",
               _fmt(direct), _fmt(ours), _fmt(ratio, ".2f"), verdict]
        if ref is not None:
            theirs = _med(samples.get((op, mode, ref.name), []))
            row += [_fmt(theirs), _fmt(_ratio(theirs, direct), ".2f")]
        table.rows.append(row)
        for label in [p.label for p in paths]:
            ctx.raw.append(f"throughput {server.name} {op} {mode} {label} MiB/s: "
                           + ", ".join(f"{v:.0f}" for v in samples.get((op, mode, label), [])))
    hwm = proxy.hwm_kib()
    table.notes.append(f"ftpdiag peak RSS (VmHWM) over these transfers: {hwm / KIB:.1f} MiB")
    return table


# ---- NOOP latency ---------------------------------------------------------------------------


def latency(ctx: Context, server: Server, proxy: Proxy, ref: Proxy | None) -> Table:
    s = ctx.settings
    paths = _paths(server, proxy, ref)
    med: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    cpu_us: list[float] = []
    for run in range(s.runs):
        for path in _rotate(paths, run):
            cpu0 = proxy.cpu()
            try:
                rtts = clients.noop_rtts(path.host, path.port, server.user, server.password,
                                         s.noops)
            except (BenchError, OSError) as exc:
                _problem(ctx, path, f"{server.name} NOOP via {path.label}: {exc}")
                continue
            if path.label == "ftpdiag":  # includes login and warm-up: a slight overestimate
                cpu_us.append((proxy.cpu() - cpu0) * 1e6 / s.noops)
            rtts.sort()
            med.setdefault(path.label, []).append(statistics.median(rtts) * 1e6)
            at99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
            p99.setdefault(path.label, []).append(at99 * 1e6)
    cols = ["server", "direct median µs", "direct p99 µs", "ftpdiag median µs", "ftpdiag p99 µs",
            "added median µs", "added p99 µs", "target", "ftpdiag CPU µs/NOOP"]
    if ref is not None:
        cols += [f"{ref.name} median µs", f"{ref.name} p99 µs", f"{ref.name} added median µs"]
    table = Table(f"NOOP round trip: {s.noops} commands on one control connection, "
                  f"median of {s.runs} runs", cols)
    d_med, d_p99 = _med(med.get("direct", [])), _med(p99.get("direct", []))
    o_med, o_p99 = _med(med.get("ftpdiag", [])), _med(p99.get("ftpdiag", []))
    added = o_med - d_med if o_med is not None and d_med is not None else None
    added99 = o_p99 - d_p99 if o_p99 is not None and d_p99 is not None else None
    verdict = ctx.target("added NOOP latency ≤ 0.1 ms median", server.name,
                         f"{_fmt(added)} µs", added is not None and added <= 100)
    row = [server.name, _fmt(d_med), _fmt(d_p99), _fmt(o_med), _fmt(o_p99), _fmt(added),
           _fmt(added99), verdict, _fmt(_med(cpu_us))]
    if ref is not None:
        r_med, r_p99 = _med(med.get(ref.name, [])), _med(p99.get(ref.name, []))
        row += [_fmt(r_med), _fmt(r_p99),
                _fmt(r_med - d_med if r_med is not None and d_med is not None else None)]
    table.rows.append(row)
    for label in med:
        ctx.raw.append(f"latency {server.name} {label} median/p99 µs per run: "
                       + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(med[label], p99[label],
                                                                        strict=True)))
    return table


# ---- concurrency ----------------------------------------------------------------------------


def concurrency(ctx: Context, server: Server, proxy: Proxy) -> Table:
    s, small = ctx.settings, ctx.files["small"]
    table = Table(f"Concurrency: N clients at once, each logs in, RETRs a {human(small.size)} "
                  f"file {s.repeats} times (passive), quits; median of {s.runs} runs",
                  ["server", "N", "direct sessions/s", "ftpdiag sessions/s", "ratio",
                   "failures direct/ftpdiag", "ftpdiag CPU ms/session", "target"])
    paths = [Route("direct", server.host, server.port), Route("ftpdiag", proxy.host, proxy.port)]
    for n in s.clients:
        rates: dict[str, list[float]] = {}
        failures = {"direct": 0, "ftpdiag": 0}
        cpu_ms: list[float] = []
        for run in range(s.runs):
            log(f"concurrency {server.name}: N={n} run {run + 1}/{s.runs}")
            for path in _rotate(paths, run):
                _settle(n)
                cpu0 = proxy.cpu()
                result = clients.concurrency(path.host, path.port, server.user, server.password,
                                             n, small.name, small.size, s.repeats,
                                             timeout=120 + n * 0.5)
                cpu1 = proxy.cpu()
                rates.setdefault(path.label, []).append(n / result.seconds)
                failures[path.label] += result.failures
                if path.label == "ftpdiag":
                    cpu_ms.append((cpu1 - cpu0) * 1000 / n)
                if result.failures:
                    sample = "; ".join(sorted(set(result.errors))[:3])
                    ctx.fail(f"{server.name} concurrency N={n} via {path.label}: "
                             f"{result.failures} of {n} sessions failed ({sample})")
        proxy.check_alive()
        direct, ours = _med(rates.get("direct", [])), _med(rates.get("ftpdiag", []))
        verdict = ""
        if n == max(s.clients):
            verdict = ctx.target(f"{n} concurrent clients, zero failures", server.name,
                                 f"{failures['ftpdiag']} failures", failures["ftpdiag"] == 0)
        table.rows.append([server.name, str(n), _fmt(direct), _fmt(ours),
                           _fmt(_ratio(ours, direct), ".2f"),
                           f"{failures['direct']}/{failures['ftpdiag']}", _fmt(_med(cpu_ms), ".1f"),
                           verdict])
        for label, values in rates.items():
            ctx.raw.append(f"concurrency {server.name} N={n} {label} sessions/s: "
                           + ", ".join(f"{v:.1f}" for v in values))
        ctx.raw.append(f"concurrency {server.name} N={n} ftpdiag CPU ms/session: "
                       + ", ".join(f"{v:.1f}" for v in cpu_ms))
    return table


# ---- idle sessions --------------------------------------------------------------------------


def idle(ctx: Context, server: Server) -> Table:
    s = ctx.settings
    per: list[float] = []
    bases: list[float] = []
    withs: list[float] = []
    for run in range(s.runs):
        log(f"idle {server.name}: {s.idle} sessions, run {run + 1}/{s.runs}")
        _settle(s.idle)
        proxy = procs.start_ftpdiag(server, ctx.workdir, f"idle{run}")
        try:
            warm = clients.RawFTP(proxy.host, proxy.port)  # load what a session loads
            warm.login(server.user, server.password)
            warm.cmd("NOOP", b"200")
            warm.close()
            time.sleep(0.5)
            base = proxy.rss_kib()
            seen: dict[str, int] = {}

            def measure(seen: dict[str, int] = seen, proxy: Proxy = proxy) -> None:
                seen["rss"] = proxy.rss_kib()

            errors = clients.idle_sessions(proxy.host, proxy.port, server.user, server.password,
                                           s.idle, measure)
            proxy.check_alive()
        finally:
            proxy.stop()
        if errors:
            ctx.fail(f"{server.name} idle: {len(errors)} of {s.idle} sessions failed "
                     f"({'; '.join(sorted(set(errors))[:3])})")
            continue
        per.append((seen["rss"] - base) / s.idle)
        bases.append(base / KIB)
        withs.append(seen["rss"] / KIB)
    value = _med(per)
    verdict = ctx.target("≤ 50 KiB RSS per idle session", server.name, f"{_fmt(value, '.1f')} KiB",
                         value is not None and value <= 50)
    table = Table(f"Idle sessions: {s.idle} logged-in sessions held open through ftpdiag, "
                  f"median of {s.runs} runs",
                  ["server", "sessions", "baseline RSS MiB", "RSS with sessions MiB",
                   "KiB/session", "target"])
    table.rows.append([server.name, str(s.idle), _fmt(_med(bases), ".1f"),
                       _fmt(_med(withs), ".1f"), _fmt(value, ".1f"), verdict])
    ctx.raw.append(f"idle {server.name} KiB/session per run: " + ", ".join(f"{v:.1f}" for v in per))
    return table


# ---- slow reader ----------------------------------------------------------------------------


def slow_reader(ctx: Context, server: Server) -> Table:
    s, slow = ctx.settings, ctx.files["slow"]
    log(f"slow reader {server.name}: {human(slow.size)} at {s.slow_rate / 1e6:g} MB/s "
        f"(about {slow.size / s.slow_rate:.0f} s)")
    proxy = procs.start_ftpdiag(server, ctx.workdir, "slow")
    peak = [0]
    try:
        base = proxy.rss_kib()

        def sample() -> None:
            peak[0] = max(peak[0], proxy.hwm_kib())

        try:
            seconds: float | None = clients.slow_retr(
                proxy.host, proxy.port, server.user, server.password, slow.name, slow.size,
                s.slow_rate, slow.sha256, sample)
        except (BenchError, OSError) as exc:
            ctx.fail(f"{server.name} slow reader: {exc}")
            seconds = None
        proxy.check_alive()
        peak[0] = max(peak[0], proxy.hwm_kib())
    finally:
        proxy.stop()
    peak_mib = peak[0] / KIB
    verdict = ctx.target("peak RSS under a slow reader ≤ 100 MiB", server.name,
                         f"{peak_mib:.1f} MiB", seconds is not None and peak_mib <= 100)
    table = Table("Slow reader: one RETR through ftpdiag to a client reading at a fixed rate "
                  "(single run)",
                  ["server", "size", "client rate", "seconds", "achieved MB/s",
                   "ftpdiag RSS before MiB", "ftpdiag peak RSS (VmHWM) MiB", "target"])
    table.rows.append([server.name, human(slow.size), f"{s.slow_rate / 1e6:g} MB/s",
                       _fmt(seconds, ".1f"),
                       _fmt(slow.size / seconds / 1e6 if seconds else None, ".1f"),
                       f"{base / KIB:.1f}", f"{peak_mib:.1f}", verdict])
    return table


def human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


FIGURES: dict[str, Callable[..., Table]] = {
    "throughput": throughput,
    "latency": latency,
    "concurrency": concurrency,
    "idle": idle,
    "slow": slow_reader,
}
