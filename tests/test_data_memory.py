"""Back-pressure end to end: a fast server, a slow client, and the proxy in between must not
buffer the difference. The proxy runs in this process (the reactor thread), so this process's
RSS is what is watched."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ftpdiag.testing import ProxyHandle
from tests.conftest import ModeFTP, Served
from tests.fake_servers import FakeFTPServer, make_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SIZE = 200 * 1024 * 1024
CHUNK = 64 * 1024
PAUSE = 0.002  # between reads: ~30 MB/s, far below what the server and proxy can do
MAX_GROWTH = 64 * 1024 * 1024
DEADLINE = 30.0


def rss() -> int:
    """This process's resident set size in bytes, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRSS(threading.Thread):
    """Samples RSS every 20 ms until stopped; ``peak`` is the highest value seen."""

    def __init__(self) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.peak = rss()
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss())
            self.samples += 1

    def stop(self) -> int:
        self.done.set()
        self.join(5.0)
        return self.peak


def test_slow_reader_bounded_memory(
    fake_server: Callable[..., FakeFTPServer],
    ftpdiag_proxy: Callable[..., ProxyHandle],
    ftp_client: Callable[..., ModeFTP],
    served: Served,
) -> None:
    """A 200 MB RETR to a reader slower than the server keeps the proxy's RSS growth bounded."""
    digest = make_file(served.root, "huge.bin", SIZE, seed=4)
    proxy = ftpdiag_proxy(fake_server().address)
    ftp = ftp_client(proxy.address, "PASV")
    ftp.voidcmd("TYPE I")
    baseline = rss()
    sampler = PeakRSS()
    sampler.start()
    started = time.monotonic()
    received, sha = 0, hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with ftp.transfercmd("RETR huge.bin") as conn:
            while n := conn.recv_into(buf):
                sha.update(view[:n])  # hash and forget: the reader holds no data
                received += n
                assert time.monotonic() - started < DEADLINE, f"only {received} bytes read"
                time.sleep(PAUSE)
    finally:
        peak = sampler.stop()
    assert ftp.voidresp().startswith("226")
    assert received == SIZE and sha.hexdigest() == digest
    assert sampler.samples > 10
    growth = peak - baseline
    print(f"RSS growth {growth / 2**20:.1f} MiB, {time.monotonic() - started:.1f} s")
    assert growth < MAX_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"
    end = proxy.wait_for("transfer.end")
    assert (end["bytes"], end["outcome"]) == (SIZE, 226)
