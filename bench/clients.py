"""The benchmark clients: curl for bulk transfers, raw sockets for the rest.

Every wait is bounded (socket timeouts, ``asyncio.wait_for``, deadlines), and every
transfer is checked: byte counts always, SHA-256 where a caller asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError

CURL = "curl"
CHUNK = 1 << 20
_PASV = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")


def write_random(path: Path, size: int) -> str:
    """Write ``size`` bytes from os.urandom (in 1 MiB chunks); return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, CHUNK))
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- curl ------------------------------------------------------------------------------------


@dataclass
class Transfer:
    """One curl transfer: bytes moved, seconds of data phase (total minus pre-transfer)."""

    nbytes: int
    seconds: float
    sha256: str = ""


def _mode_args(mode: str) -> list[str]:
    return ["--ftp-pasv"] if mode == "pasv" else ["--ftp-port", "127.0.0.1"]


def curl_retr(url: str, mode: str, *, verify: bool, timeout: float) -> Transfer:
    """RETR ``url`` with curl; to /dev/null (timed by curl) or through SHA-256 (``verify``)."""
    base = [CURL, "-sS", "--connect-timeout", "10", "--max-time", str(int(timeout)),
            *_mode_args(mode)]
    if not verify:
        proc = subprocess.run(
            [*base, "-o", "/dev/null", "-w", "%{size_download} %{time_pretransfer} %{time_total}",
             url], capture_output=True, text=True, timeout=timeout + 10, check=False)
        if proc.returncode != 0:
            raise BenchError(f"curl RETR {mode} failed ({proc.returncode}): {proc.stderr.strip()}")
        size, pre, total = proc.stdout.split()
        return Transfer(int(size), float(total) - float(pre))
    digest, nbytes = hashlib.sha256(), 0
    started = time.monotonic()
    with subprocess.Popen([*base, "-o", "-", url], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(CHUNK):  # ends at EOF; curl's --max-time bounds it
            digest.update(chunk)
            nbytes += len(chunk)
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait(timeout)
    if rc != 0:
        raise BenchError(f"curl RETR {mode} (verified) failed ({rc}): {err.strip()}")
    return Transfer(nbytes, time.monotonic() - started, digest.hexdigest())


def curl_stor(url: str, mode: str, source: Path, *, timeout: float) -> Transfer:
    """STOR ``source`` to ``url`` with curl (timed by curl)."""
    proc = subprocess.run(
        [CURL, "-sS", "--connect-timeout", "10", "--max-time", str(int(timeout)), *_mode_args(mode),
         "-T", str(source), "-w", "%{size_upload} %{time_pretransfer} %{time_total}", url],
        capture_output=True, text=True, timeout=timeout + 10, check=False)
    if proc.returncode != 0:
        raise BenchError(f"curl STOR {mode} failed ({proc.returncode}): {proc.stderr.strip()}")
    size, pre, total = proc.stdout.split()
    return Transfer(int(size), float(total) - float(pre))


# ---- blocking raw client (NOOP latency, slow reader) -----------------------------------------


class RawFTP:
    """A minimal blocking FTP control connection."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.expect(b"2")

    def reply(self) -> bytes:
        first = self.file.readline(8192)
        if not first:
            raise BenchError("control connection closed while waiting for a reply")
        if first[3:4] == b"-":
            code = first[:3]
            for _ in range(10000):
                line = self.file.readline(8192)
                if not line:
                    raise BenchError("control connection closed inside a multi-line reply")
                if line[:3] == code and line[3:4] == b" ":
                    break
        return first

    def expect(self, prefix: bytes) -> bytes:
        line = self.reply()
        if not line.startswith(prefix):
            raise BenchError(f"expected a {prefix.decode()}xx reply, got {line[:100]!r}")
        return line

    def cmd(self, text: str, prefix: bytes) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.expect(prefix)

    def login(self, user: str, password: str) -> None:
        if self.cmd(f"USER {user}", b"3").startswith(b"331"):
            self.cmd(f"PASS {password}", b"2")

    def close(self) -> None:
        with contextlib.suppress(OSError, BenchError):
            self.cmd("QUIT", b"2")
        self.file.close()
        self.sock.close()


def noop_rtts(host: str, port: int, user: str, password: str, count: int) -> list[float]:
    """Round-trip seconds of ``count`` NOOPs, one after another, on one logged-in connection."""
    ftp = RawFTP(host, port)
    try:
        ftp.login(user, password)
        for _ in range(min(50, count)):  # warm-up, not measured
            ftp.cmd("NOOP", b"200")
        out: list[float] = []
        send, reply, clock = ftp.sock.sendall, ftp.reply, time.perf_counter
        for _ in range(count):
            t0 = clock()
            send(b"NOOP\r\n")
            line = reply()
            out.append(clock() - t0)
            if not line.startswith(b"200"):
                raise BenchError(f"NOOP answered {line[:100]!r}")
        return out
    finally:
        ftp.close()


def slow_retr(host: str, port: int, user: str, password: str, name: str, size: int, rate: float,
              expect_sha: str, sample: Callable[[], None]) -> float:
    """RETR ``name`` reading at ``rate`` bytes/s; call ``sample`` about 4 times a second.

    Returns the seconds the transfer took; raises if the size or SHA-256 differ.
    """
    ftp = RawFTP(host, port, timeout=60)
    try:
        ftp.login(user, password)
        ftp.cmd("TYPE I", b"2")
        data = _pasv_connect(ftp.cmd("PASV", b"227"))
        ftp.sock.sendall(f"RETR {name}\r\n".encode())
        ftp.expect(b"1")
        digest, got = hashlib.sha256(), 0
        step = max(1, min(64 * 1024, int(rate / 100)))
        start = last_sample = time.monotonic()
        deadline = start + size / rate * 3 + 60
        with data:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise BenchError(f"slow reader: only {got} of {size} bytes by the deadline")
                ahead = got / rate - (now - start)
                if ahead > 0:
                    time.sleep(ahead)
                chunk = data.recv(step)
                if not chunk:
                    break
                digest.update(chunk)
                got += len(chunk)
                if now - last_sample >= 0.25:
                    sample()
                    last_sample = now
        elapsed = time.monotonic() - start
        ftp.expect(b"2")
        sample()
    finally:
        ftp.close()
    if got != size or digest.hexdigest() != expect_sha:
        raise BenchError(f"slow reader: got {got} bytes (want {size}), sha256 "
                         f"{'matches' if digest.hexdigest() == expect_sha else 'DIFFERS'}")
    return elapsed


def _pasv_connect(reply: bytes) -> socket.socket:
    m = _PASV.search(reply)
    if not m:
        raise BenchError(f"cannot parse PASV reply {reply[:100]!r}")
    parts = [int(x) for x in m.groups()]
    host = ".".join(map(str, parts[:4]))
    return socket.create_connection((host, parts[4] * 256 + parts[5]), timeout=60)


# ---- asyncio clients (concurrency, idle sessions) --------------------------------------------


def _reset_on_close(sock: socket.socket | None) -> None:
    """Make close() send RST (SO_LINGER 0): used once the peer has closed first, it drops the
    peer's FIN_WAIT socket and so leaves no TIME_WAIT behind (see procs.wait_time_wait)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Sink(asyncio.Protocol):
    """Counts the bytes of a data connection; ``done`` resolves at EOF/close."""

    def __init__(self) -> None:
        self.count = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        _reset_on_close(self.transport.get_extra_info("socket"))
        return False  # the transport closes now, with a RST

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(self.count)
            else:
                self.done.set_exception(exc)


class AsyncFTP:
    """A minimal asyncio FTP client: login, PASV RETR into a byte counter, QUIT."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> AsyncFTP:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
        ftp = cls(reader, writer)
        await ftp.expect(b"2")
        return ftp

    async def reply(self) -> bytes:
        first = await self.reader.readline()
        if not first:
            raise BenchError("control connection closed while waiting for a reply")
        if first[3:4] == b"-":
            code = first[:3]
            for _ in range(10000):
                line = await self.reader.readline()
                if not line:
                    raise BenchError("control connection closed inside a multi-line reply")
                if line[:3] == code and line[3:4] == b" ":
                    break
        return first

    async def expect(self, prefix: bytes) -> bytes:
        line = await self.reply()
        if not line.startswith(prefix):
            raise BenchError(f"expected a {prefix.decode()}xx reply, got {line[:100]!r}")
        return line

    async def cmd(self, text: str, prefix: bytes) -> bytes:
        self.writer.write(text.encode() + b"\r\n")
        return await self.expect(prefix)

    async def login(self, user: str, password: str) -> None:
        if (await self.cmd(f"USER {user}", b"3")).startswith(b"331"):
            await self.cmd(f"PASS {password}", b"2")
        await self.cmd("TYPE I", b"2")

    async def retr(self, name: str) -> int:
        reply = await self.cmd("PASV", b"227")
        m = _PASV.search(reply)
        if not m:
            raise BenchError(f"cannot parse PASV reply {reply[:100]!r}")
        parts = [int(x) for x in m.groups()]
        loop = asyncio.get_running_loop()
        transport, sink = await loop.create_connection(
            _Sink, ".".join(map(str, parts[:4])), parts[4] * 256 + parts[5])
        try:
            self.writer.write(f"RETR {name}\r\n".encode())
            await self.expect(b"1")
            count = await sink.done
        finally:
            transport.close()
        await self.expect(b"2")
        return count

    async def quit(self) -> None:
        """QUIT, wait for the peer to close (bounded), then close with a RST (no TIME_WAIT)."""
        with contextlib.suppress(OSError, BenchError, asyncio.TimeoutError):
            await self.cmd("QUIT", b"2")
            await asyncio.wait_for(self.reader.read(), 10)
            _reset_on_close(self.writer.get_extra_info("socket"))
        self.close()

    def close(self) -> None:
        self.writer.close()


@dataclass
class ConcurrencyResult:
    ok: int
    failures: int
    seconds: float
    errors: list[str]


# Connections being set up at once (connect until greeting). vsftpd listens with a backlog of
# 32 and Twisted with 50: a burst beyond that overflows the accept queue, and with SYN cookies
# on, a dropped handshake leaves the client "connected" and waiting forever for a greeting
# the server will never send. Sessions still run concurrently once set up.
CONNECT_GATE = 16


async def _open(host: str, port: int, gate: asyncio.Semaphore) -> AsyncFTP:
    async with gate:
        return await asyncio.wait_for(AsyncFTP.open(host, port), 60)


async def _one_client(host: str, port: int, user: str, password: str, name: str, size: int,
                      repeats: int, gate: asyncio.Semaphore) -> None:
    ftp = await _open(host, port, gate)
    try:
        await ftp.login(user, password)
        for i in range(repeats):
            got = await ftp.retr(name)
            if got != size:
                raise BenchError(f"transfer {i + 1}: got {got} bytes, want {size}")
        await ftp.quit()
    finally:
        ftp.close()


async def _concurrency(host: str, port: int, user: str, password: str, clients: int, name: str,
                       size: int, repeats: int, timeout: float) -> ConcurrencyResult:
    gate = asyncio.Semaphore(CONNECT_GATE)
    start = time.monotonic()
    results = await asyncio.gather(
        *(asyncio.wait_for(_one_client(host, port, user, password, name, size, repeats, gate),
                           timeout)
          for _ in range(clients)),
        return_exceptions=True,
    )
    seconds = time.monotonic() - start
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return ConcurrencyResult(clients - len(errors), len(errors), seconds, errors)


def concurrency(host: str, port: int, user: str, password: str, clients: int, name: str,
                size: int, repeats: int = 5, timeout: float = 300.0) -> ConcurrencyResult:
    """``clients`` sessions at once, each: login, ``repeats`` PASV RETRs of ``name``, QUIT."""
    return asyncio.run(_concurrency(host, port, user, password, clients, name, size, repeats,
                                    timeout))


async def _open_idle(host: str, port: int, user: str, password: str, count: int,
                     parallel: int) -> tuple[list[AsyncFTP], list[str]]:
    gate = asyncio.Semaphore(parallel)
    connect_gate = asyncio.Semaphore(CONNECT_GATE)
    sessions: list[AsyncFTP] = []

    async def one() -> None:
        async with gate:
            ftp = await _open(host, port, connect_gate)
            sessions.append(ftp)
            await ftp.login(user, password)

    results = await asyncio.gather(*(asyncio.wait_for(one(), 120) for _ in range(count)),
                                   return_exceptions=True)
    return sessions, [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


async def _idle(host: str, port: int, user: str, password: str, count: int,
                measure: Callable[[], None]) -> list[str]:
    sessions, errors = await _open_idle(host, port, user, password, count, parallel=50)
    try:
        if not errors:
            await asyncio.sleep(1.0)  # let the proxy settle (deferred work, log writes)
            # Every session must still be alive: one NOOP each, a few at a time.
            gate = asyncio.Semaphore(100)

            async def ping(ftp: AsyncFTP) -> None:
                async with gate:
                    await ftp.cmd("NOOP", b"200")

            results = await asyncio.gather(*(asyncio.wait_for(ping(s), 60) for s in sessions),
                                           return_exceptions=True)
            errors += [f"NOOP: {type(r).__name__}: {r}" for r in results
                       if isinstance(r, BaseException)]
            measure()
    finally:
        gate = asyncio.Semaphore(100)

        async def bye(ftp: AsyncFTP) -> None:
            async with gate:
                await ftp.quit()

        await asyncio.gather(*(asyncio.wait_for(bye(s), 30) for s in sessions),
                             return_exceptions=True)
        for ftp in sessions:
            ftp.close()
    return errors


def idle_sessions(host: str, port: int, user: str, password: str, count: int,
                  measure: Callable[[], None]) -> list[str]:
    """Hold ``count`` logged-in sessions open, call ``measure`` while they are; return errors."""
    return asyncio.run(_idle(host, port, user, password, count, measure))
