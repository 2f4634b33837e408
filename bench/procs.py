"""The processes a benchmark runs: FTP servers, the ftpdiag proxy, Debian's ftp-proxy.

Everything listens on 127.0.0.1 only, runs in its own process group (so that a server's
session children go with it), and is stopped with SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
NOFILE = 65536
STOP_TIMEOUT = 5.0
# vsftpd picks a random passive port from its range and gives up after 10 taken ones:
# hundreds of concurrent sessions need far more than the interop harness's 100 ports.
VSFTPD_PASV_PORTS = 1500
PYFTPDLIB_PASV_PORTS = 1500
# Each connection leaves a TIME_WAIT entry for 60 s on the side that closed first. On
# ephemeral ports they slow the kernel's choice of free ports and finally exhaust the 28k of
# them, so runs start only below this many (see wait_time_wait). The asyncio clients close
# with a RST once the peer has closed, which spares most of them.
TIME_WAIT_START = 8000
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A benchmark could not run or produced a wrong result; the message says which."""


def raise_nofile() -> None:
    """``ulimit -n`` for this process (and, as a ``preexec_fn``, for a child)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise hard
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pasv_range(count: int) -> tuple[int, int]:
    """``count`` consecutive ports of 20000-32000 (below the ephemeral range) with no listener.

    Tested with SO_REUSEADDR, as vsftpd binds them: ports a previous run left in TIME_WAIT
    are usable (the interop harness's stricter check refuses them).
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        if all(_bindable(p) for p in range(base, base + count)):
            return base, base + count - 1
    raise BenchError(f"no {count} consecutive free ports in 20000-32000")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group of ``proc``, wait a bounded time, then SIGKILL it."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # forked children outlive their parent


def wait_greeting(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Poll until a 220 greeting arrives on ``host:port`` (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"process {proc.args!r} exited with {proc.returncode} before greeting")
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(2)
                data = s.recv(4096)
                if data.startswith(b"220"):
                    with contextlib.suppress(OSError):
                        s.sendall(b"QUIT\r\n")
                    return
                raise BenchError(f"{host}:{port} greeted with {data[:80]!r}")
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise BenchError(f"no 220 greeting on {host}:{port} within {timeout} s (last error: {last})")


# ---- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def time_wait_count() -> int:
    """TCP sockets in TIME_WAIT on a local port of the ephemeral range (/proc/net/tcp{,6})."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if fields[3] == "06" and low <= int(fields[1].rsplit(":", 1)[1], 16) <= high:
                    count += 1
    return count


def wait_time_wait(limit: int = TIME_WAIT_START, max_wait: float = 15.0) -> float:
    """Wait (at most ``max_wait`` s) until fewer than ``limit`` TIME_WAIT sockets remain."""
    start = time.monotonic()
    while time_wait_count() >= limit and time.monotonic() - start < max_wait:
        time.sleep(1.0)
    return time.monotonic() - start


# ---- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """A running FTP server: where it listens, its login, and its files directory."""

    name: str
    host: str
    port: int
    user: str
    password: str
    root: Path
    version: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    _stop: list[object] = field(default_factory=list, repr=False)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = ""
            if self.log_path is not None and self.log_path.exists():
                tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}: {tail}")

    def put(self, relpath: str, source: Path) -> Path:
        """Make ``source`` visible as ``relpath`` (hard link if possible), readable by all."""
        dest = self.root / relpath
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        dest.chmod(0o644)
        return dest

    def prepare_upload(self, relpath: str) -> Path:
        dest = self.root / relpath
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        return dest

    def stop(self) -> None:
        while self._stop:
            action = self._stop.pop()
            with contextlib.suppress(Exception):
                action()  # type: ignore[operator]


def start_pyftpdlib(workdir: Path) -> Server:
    """pyftpdlib (async, one process) serving a fresh root under ``workdir``."""
    from importlib.metadata import version

    root = Path(tempfile.mkdtemp(prefix="pyftpdlib-root-", dir=workdir))
    user, password = "bench", "bench-pw"
    log = (workdir / "pyftpdlib.log").open("ab")
    low, high = pasv_range(PYFTPDLIB_PASV_PORTS)  # not the ephemeral range: see wait_time_wait
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.pyftpd", "--root", str(root), "--user", user,
         "--password", password, "--pasv", f"{low}:{high}"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        start_new_session=True, preexec_fn=raise_nofile,
    )
    server = Server("pyftpdlib", HOST, 0, user, password, root, f"pyftpdlib {version('pyftpdlib')}")
    server._stop += [log.close, lambda: stop_group(proc)]
    server.proc = proc
    server.log_path = workdir / "pyftpdlib.log"
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # bounded: the child prints it first or dies
        if not line.startswith("PORT "):
            raise BenchError(f"pyftpdlib did not start: {line!r}; see {workdir}/pyftpdlib.log")
        server.port = int(line.split()[1])
        wait_greeting(HOST, server.port, 10, proc)
    except BaseException:
        server.stop()
        raise
    return server


def start_vsftpd(workdir: Path) -> Server:
    """vsftpd through the interop harness (tests/interop/servers.py), tuned for load."""
    try:
        from tests.interop import servers as interop
    except Exception as exc:  # the harness is someone else's; say why it is unusable
        raise BenchError(f"cannot import tests/interop/servers.py: {exc!r}") from exc

    class BenchVsftpd(interop.VsftpdServer):  # type: ignore[misc, name-defined]
        def _prepare(self) -> list[str]:
            self.pasv_ports = pasv_range(VSFTPD_PASV_PORTS)
            cmd: list[str] = super()._prepare()
            conf = self.workdir / "vsftpd.conf"
            lines = dict(line.split("=", 1) for line in conf.read_text().splitlines() if line)
            lines.update(
                log_ftp_protocol="NO",  # a production-like server: transfer log only
                idle_session_timeout="900",  # the idle-sessions figure holds them for minutes
                data_connection_timeout="300",
                accept_timeout="120",
                connect_timeout="120",
            )
            conf.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
            return cmd

    srv = BenchVsftpd(base_dir=workdir)
    try:
        srv.start()
    except interop.ServerUnavailable as exc:
        raise BenchError(f"vsftpd cannot run here: {exc}") from exc
    except Exception as exc:
        raise BenchError(f"vsftpd did not start: {type(exc).__name__}: {exc}") from exc
    server = Server("vsftpd", srv.host, srv.port, srv.user, srv.password, srv.root,
                    tool_version([str(srv.binary), "-v"], stdin_is_stdout=True))
    server.proc = srv.proc
    server.log_path = srv.log_path
    server._stop.append(srv.stop)
    return server


def tool_version(cmd: list[str], stdin_is_stdout: bool = False) -> str:
    """First line a tool prints about its version ('' if it cannot run)."""
    try:
        if stdin_is_stdout:  # vsftpd -v writes to file descriptor 0
            r, w = os.pipe()
            with os.fdopen(r, "rb") as reader:
                proc = subprocess.run(cmd, stdin=w, stdout=w, stderr=w, timeout=10, check=False)
                os.close(w)
                out = reader.read().decode(errors="replace")
            del proc
        else:
            proc2 = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            out = proc2.stdout.strip() or proc2.stderr
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


# ---- proxies --------------------------------------------------------------------------------


@dataclass
class Proxy:
    """A running proxy process in front of an upstream server."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return status_kib(self.pid, "VmHWM")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}; "
                             f"see {self.log_path}")

    def stop(self) -> None:
        stop_group(self.proc)


def start_ftpdiag(
    upstream: Server, workdir: Path, tag: str, extra: Sequence[str] = ()
) -> Proxy:
    """``python -m ftpdiag proxy`` with JSON logging to a file, as a subprocess (``extra``:
    more options, e.g. ``--metrics``)."""
    log = workdir / f"ftpdiag-{upstream.name}-{tag}.jsonl"
    log.unlink(missing_ok=True)
    out = (workdir / f"ftpdiag-{upstream.name}-{tag}.stderr").open("ab")
    cmd = [sys.executable, "-m", "ftpdiag", "proxy", "--listen", f"{HOST}:0",
           "--upstream", f"{upstream.host}:{upstream.port}", "--log-file", str(log),
           "--log-format", "json", "-q", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True, preexec_fn=raise_nofile)
    out.close()
    proxy = Proxy("ftpdiag", HOST, 0, proc, log)
    try:
        deadline = time.monotonic() + 20
        while proxy.port == 0:
            if time.monotonic() > deadline:
                raise BenchError(f"ftpdiag proxy did not log proxy.listen within 20 s ({log})")
            proxy.check_alive()
            with contextlib.suppress(FileNotFoundError):
                for line in log.read_text().splitlines():
                    record = json.loads(line)
                    if record.get("event") == "proxy.listen":
                        proxy.port = int(str(record["listen"]).rsplit(":", 1)[1])
            time.sleep(0.05)
        wait_greeting(HOST, proxy.port, 10, proc)
    except BaseException:
        proxy.stop()
        raise
    return proxy


FTP_PROXY = "/usr/sbin/ftp-proxy"


def ftp_proxy_available() -> str:
    """'' if Debian's ftp-proxy can be run, else why not."""
    if not os.access(FTP_PROXY, os.X_OK):
        return f"{FTP_PROXY} is not installed (Debian package ftp-proxy)"
    if os.geteuid() != 0:
        return "ftp-proxy needs root here (it setuid()s to nobody)"
    return ""


def start_ftp_proxy(upstream: Server, workdir: Path) -> Proxy:
    """Debian's ftp-proxy (SuSE proxy-suite) in standalone mode, not detached (``-d -n``).

    It forks one child per client; MaxClients is capped at 512 by the program itself.
    """
    port = free_port()
    conf = workdir / "ftp-proxy.conf"
    logdir = workdir / "ftp-proxy-log"  # it (re)creates its log after setuid(nobody)
    logdir.mkdir(exist_ok=True)
    log = logdir / "ftp-proxy.log"
    conf.write_text(
        "[-Global-]\n"
        f"Listen {HOST}\nPort {port}\n"
        f"DestinationAddress {upstream.host}\nDestinationPort {upstream.port}\n"
        "DestinationTransferMode client\n"
        "User nobody\nGroup nogroup\n"
        "MaxClients 512\nForkLimit 100000\nTimeOut 900\n"
        f"LogDestination {log}\nLogLevel INF\n"
        "ServerType standalone\n"
    )
    import pwd

    os.chown(logdir, pwd.getpwnam("nobody").pw_uid, -1)
    out = (workdir / "ftp-proxy.stderr").open("ab")
    proc = subprocess.Popen([FTP_PROXY, "-d", "-n", "-f", str(conf)], cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True)
    out.close()
    proxy = Proxy("ftp-proxy", HOST, port, proc, log)
    try:
        wait_greeting(HOST, port, 10, proc)
    except BaseException:
        proxy.stop()
        raise
    return proxy
