"""``python -m bench``: run the figures, print the table, write docs/benchmarks.md.

Exit status: 0 when every transfer had the right bytes and every session succeeded (targets
may still be missed: they are reported as PASS/MISS), 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import clients, procs
from bench.figures import FIGURES, Context, DataFile, Settings, Table, log
from bench.procs import REPO, BenchError, Proxy, Server
from bench.report import git_revision, loadavg, machine_facts, markdown, terminal

SERVERS = ("vsftpd", "pyftpdlib")
STARTERS = {"vsftpd": procs.start_vsftpd, "pyftpdlib": procs.start_pyftpdlib}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "kib": 1 << 10, "mb": 10**6, "mib": 1 << 20, "gb": 10**9,
          "gib": 1 << 30}


def size_arg(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: a size like 4MiB, 50MB or 1GiB")
    value = int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def list_arg(choices: tuple[str, ...]) -> object:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items
    return parse


def int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: positive numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the ftpdiag proxy against direct connections (loopback only).")
    p.add_argument("--quick", action="store_true",
                   help="1 run and tiny sizes (4 MiB file, 100 NOOPs, 5 clients, 50 idle "
                        "sessions, 50 MiB slow read)")
    p.add_argument("--runs", type=int, help="runs per figure, medians reported (default 3)")
    p.add_argument("--only", type=list_arg(tuple(FIGURES)), metavar="NAME[,NAME]",
                   help=f"only these figures: {', '.join(FIGURES)}")
    p.add_argument("--servers", type=list_arg(SERVERS), default=list(SERVERS),
                   metavar="NAME[,NAME]",
                   help="servers, the first is the headline (default vsftpd,pyftpdlib)")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                   help="where to write the Markdown report (default docs/benchmarks.md)")
    p.add_argument("--size", type=size_arg, help="throughput file size (default 1GiB)")
    p.add_argument("--noops", type=int, help="NOOPs per latency run (default 2000)")
    p.add_argument("--clients", type=int_list, metavar="N[,N]",
                   help="concurrency levels (default 10,100,500)")
    p.add_argument("--idle", type=int, help="idle sessions held open (default 2000)")
    p.add_argument("--slow-size", type=size_arg, help="slow-reader RETR size (default 1GiB)")
    p.add_argument("--slow-rate", type=size_arg, default=10**7,
                   help="slow reader's bytes per second (default 10MB = 10,000,000)")
    p.add_argument("--no-ftp-proxy", action="store_true",
                   help="leave out Debian's ftp-proxy reference row")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        runs=args.runs or (1 if quick else 3),
        size=args.size or (4 << 20 if quick else 1 << 30),
        noops=args.noops or (100 if quick else 2000),
        clients=args.clients or ([5] if quick else [10, 100, 500]),
        repeats=5,
        small_size=1 << 20,
        idle=args.idle or (50 if quick else 2000),
        slow_size=args.slow_size or (50 << 20 if quick else 1 << 30),
        slow_rate=float(args.slow_rate),
        ftp_proxy=not args.no_ftp_proxy,
    )


def make_files(ctx: Context, selected: list[str]) -> None:
    s = ctx.settings
    wanted = []
    if "throughput" in selected:
        wanted.append(("big", "big.bin", s.size))
    if "concurrency" in selected:
        wanted.append(("small", "small.bin", s.small_size))
    if "slow" in selected:
        wanted.append(("slow", "slow.bin", s.slow_size))
    made: dict[int, DataFile] = {}
    for key, name, size in wanted:
        path = ctx.workdir / name
        if size in made:  # same size: same bytes, another name
            path.hardlink_to(made[size].path)
            ctx.files[key] = DataFile(name, path, size, made[size].sha256)
            continue
        log(f"writing {size} random bytes to {path}")
        ctx.files[key] = made[size] = DataFile(name, path, size, clients.write_random(path, size))


def run_server(ctx: Context, server: Server, selected: list[str], tables: list[Table]) -> None:
    for key in ("big", "small", "slow"):
        if key in ctx.files:
            server.put(ctx.files[key].name, ctx.files[key].path)
    shared: Proxy | None = None
    ref: Proxy | None = None
    try:
        for name in selected:
            try:
                if name in ("throughput", "latency", "concurrency"):
                    if shared is None:
                        shared = procs.start_ftpdiag(server, ctx.workdir, "shared")
                    if name != "concurrency" and ctx.settings.ftp_proxy and ref is None \
                            and server.name == "vsftpd" and not procs.ftp_proxy_available():
                        try:
                            ref = procs.start_ftp_proxy(server, ctx.workdir)
                        except BenchError as exc:
                            ctx.notes.append(f"ftp-proxy could not be started: {exc}")
                            ctx.settings.ftp_proxy = False
                    if name == "concurrency":
                        tables.append(FIGURES[name](ctx, server, shared))
                    else:
                        tables.append(FIGURES[name](ctx, server, shared, ref))
                    shared.check_alive()
                elif name == "idle" or (name == "slow" and server.name == ctx.headline):
                    tables.append(FIGURES[name](ctx, server))
                server.check_alive()
            except BenchError as exc:
                ctx.fail(f"{server.name} {name}: {exc}")
            except Exception as exc:  # a bug in the benchmark: report it, go on, exit 1
                ctx.fail(f"{server.name} {name}: {type(exc).__name__}: {exc}\n"
                         + traceback.format_exc())
    finally:
        for proxy in (shared, ref):
            if proxy is not None:
                proxy.stop()
        if shared is not None and shared.log_path.exists():
            size = shared.log_path.stat().st_size
            with shared.log_path.open("rb") as fh:
                records = sum(1 for _ in fh)
            ctx.notes.append(f"{server.name}: the ftpdiag proxy shared by throughput, latency and "
                             f"concurrency wrote {records} JSON log records "
                             f"({size / (1 << 20):.1f} MiB)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runs is not None and args.runs < 1:
        print("python -m bench: --runs must be at least 1", file=sys.stderr)
        return 2
    selected = args.only or list(FIGURES)
    selected = [f for f in FIGURES if f in selected]
    command = "python -m bench" + ("" if not (argv or sys.argv[1:]) else
                                   " " + shlex.join(argv if argv is not None else sys.argv[1:]))

    def on_term(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    procs.raise_nofile()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_at_start, rev_at_start = loadavg(), git_revision()
    if float(load_at_start.split()[0]) > (os.cpu_count() or 1):
        log(f"warning: load average {load_at_start} exceeds the CPU count: figures will be noisy")
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="ftpdiag-bench-"))
    workdir.chmod(0o755)  # vsftpd's local user must reach its root inside
    ctx = Context(settings_from(args), workdir, {}, headline=args.servers[0])
    why_not = procs.ftp_proxy_available()
    if not ctx.settings.ftp_proxy:
        ftp_proxy_note = "Left out (`--no-ftp-proxy`)."
    elif why_not:
        ftp_proxy_note = f"Not measured: {why_not}."
    elif "vsftpd" not in args.servers:
        ftp_proxy_note = "Not measured: it is run only in front of vsftpd, which was not selected."
    else:
        ftp_proxy_note = (
            "Debian's `ftp-proxy` (SuSE proxy-suite 1.9.2.4, C, one forked process per client) "
            "runs in the foreground (`ftp-proxy -d -n -f CONF`, standalone, `User nobody`, "
            "`LogLevel INF` to a file) in front of vsftpd; its columns in the throughput and "
            "NOOP tables come from the same runs as the direct figures.")
    tables: list[Table] = []
    log(f"work directory {workdir}; figures: {', '.join(selected)}; "
        f"servers: {', '.join(args.servers)}")
    try:
        make_files(ctx, selected)
        for name in args.servers:
            log(f"starting {name}")
            try:
                server = STARTERS[name](workdir)
            except Exception as exc:
                ctx.fail(f"{name}: {type(exc).__name__}: {exc}")
                continue
            try:
                run_server(ctx, server, selected, tables)
            finally:
                server.stop()
    except KeyboardInterrupt:
        ctx.fail("interrupted")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - t0
    if ctx.notes and ctx.settings.ftp_proxy is False and "could not be started" in " ".join(
            ctx.notes):
        ftp_proxy_note = "Not measured: " + "; ".join(ctx.notes)
    print(terminal(tables, ctx, seconds))
    facts = machine_facts(load_at_start, rev_at_start)
    text = markdown(tables, ctx, facts, command, started, seconds, ftp_proxy_note)
    with contextlib.suppress(FileExistsError):
        args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    log(f"wrote {args.output}")
    if ctx.errors:
        print(f"python -m bench: FAILED: {len(ctx.errors)} error(s), see above", file=sys.stderr)
        return 1
    return 0
