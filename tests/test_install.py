"""The product as a user gets it: the sdist and the wheel built from the tracked files, the
wheel installed into a fresh venv, run with a fresh ``HOME`` from another directory.

Editable installs and runs from the source tree hide a data file the wheel lacks (it is then
read from the checkout); these tests see only what ``pip install .`` would install.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.servers import unavailable

REPO = Path(__file__).resolve().parents[1]
SANDBOX_USER = SANDBOX_PASSWORD = "diag"


def _tracked_files() -> list[str]:
    """The files a clean clone has (tracked, plus new files not ignored)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        unavailable("building the wheel from the tracked files needs git and a checkout")
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in done.stdout.decode().split("\0") if name and (REPO / name).is_file()]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    package_files: frozenset[str]  # tracked files under ftpdiag/, as paths in the wheel


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist built from a copy of the tracked files, and the wheel built from that sdist
    (``python -m build``: a file the sdist lacks is then missing from the wheel too)."""
    files = _tracked_files()
    tree = tmp_path_factory.mktemp("clone")
    for name in files:
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"python -m build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist, frozenset(n for n in files if n.startswith("ftpdiag/")))


def test_wheel_and_sdist_carry_every_package_file(dist: Dist) -> None:
    """Every tracked file under ftpdiag/ (TOML knowledge, py.typed, templates...) is in the
    wheel and the sdist, and no bytecode or cache rides along."""
    wheel_names = set(zipfile.ZipFile(dist.wheel).namelist())
    with tarfile.open(dist.sdist) as sdist:
        root = sdist.getnames()[0].split("/")[0]
        sdist_names = {n.removeprefix(root + "/") for n in sdist.getnames()}
    assert sorted(dist.package_files - wheel_names) == [], "files missing from the wheel"
    assert sorted(dist.package_files - sdist_names) == [], "files missing from the sdist"
    assert any(n.endswith(".toml") for n in dist.package_files)  # the comparison has teeth
    strays = [n for n in wheel_names if "__pycache__" in n or n.endswith(".pyc")]
    assert strays == []


@dataclass(frozen=True)
class Installed:
    """ftpdiag installed from the wheel into a venv of its own."""

    bin: Path
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "ftpdiag"), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A regular (non-editable) install of the wheel in a new venv, a new HOME, and a working
    directory outside the source tree."""
    base = tmp_path_factory.mktemp("user")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(dist.wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, f"pip install of the wheel failed:\n{pip.stderr[-3000:]}"
    home, cwd = base / "home", base / "elsewhere"
    home.mkdir()
    cwd.mkdir()
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), PYTHONNOUSERSITE="1")
    return Installed(venv / "bin", env, cwd)


def test_installed_commands_run_outside_the_source_tree(installed: Installed) -> None:
    """``--help``, ``demo``, ``explain`` work from the installed wheel alone, and the module
    they run is the installed one, not the checkout's."""
    where = subprocess.run(
        [str(installed.bin / "python"), "-c", "import ftpdiag; print(ftpdiag.__file__)"],
        cwd=installed.cwd,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout
    assert installed.run("--help").returncode == 0
    demo = installed.run("demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "426" in demo.stdout + demo.stderr and "internal error" not in demo.stdout + demo.stderr
    explain = installed.run("explain", "426")
    assert explain.returncode == 0 and "426" in explain.stdout


class _Proxy:
    """``ftpdiag proxy`` on the embedded sandbox, as the README's first command runs it."""

    def __init__(self, installed: Installed) -> None:
        self.log = installed.cwd / "proxy.jsonl"
        self.proc = subprocess.Popen(
            [
                str(installed.bin / "ftpdiag"),
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--log-file",
                str(self.log),
                "--log-format",
                "json",
            ],
            cwd=installed.cwd,
            env=installed.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        listen = self._wait_for("proxy.listen")
        self.ca = str(self._wait_for("tls.ca")["ca"])
        host, _, port = str(listen["listen"]).rpartition(":")
        self.host, self.port = host, int(port)

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def _wait_for(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.records() if r["event"] == event]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                pytest.fail(
                    f"ftpdiag proxy exited {self.proc.returncode}: {self.proc.stderr.read()}"
                )  # type: ignore[union-attr]
            time.sleep(0.05)
        pytest.fail(f"no {event} record within {timeout} s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


@pytest.fixture
def proxy(installed: Installed) -> Iterator[_Proxy]:
    running = _Proxy(installed)
    yield running
    if running.proc.poll() is None:
        running.stop()


def _client(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed: scripts/test.sh installs it (as root, on Debian)")
    return path


def test_installed_proxy_serves_ftplib_curl_and_lftp(
    installed: Installed, proxy: _Proxy, tmp_path: Path
) -> None:
    """The README's first command, installed from the wheel: ftplib, curl and lftp each log in
    through ``ftpdiag proxy`` and download the same file; no internal error is logged, the
    sessions are healthy (lftp, which tries AUTH TLS first, trusts the CA the first run
    created in the fresh HOME), SIGTERM stops it with status 0, and ``analyze`` reads its
    log."""
    curl, lftp = _client("curl"), _client("lftp")
    got = io.BytesIO()
    ftp = ftplib.FTP()
    ftp.connect(proxy.host, proxy.port, timeout=10)
    ftp.login(SANDBOX_USER, SANDBOX_PASSWORD)
    ftp.retrbinary("RETR README.txt", got.write)
    ftp.quit()
    url = f"ftp://{SANDBOX_USER}:{SANDBOX_PASSWORD}@{proxy.host}:{proxy.port}/README.txt"
    by_curl = subprocess.run(
        [curl, "-sS", "--max-time", "20", url], capture_output=True, timeout=30, check=False
    )
    assert by_curl.returncode == 0, by_curl.stderr
    script = (
        "set net:max-retries 1; set net:timeout 10; "
        f"set ssl:ca-file {proxy.ca}; "  # lftp uses AUTH TLS: trust the CA the first run made
        f"open -u {SANDBOX_USER},{SANDBOX_PASSWORD} -p {proxy.port} {proxy.host}; "
        f"get README.txt -o {tmp_path / 'lftp.txt'}"
    )
    by_lftp = subprocess.run(
        [lftp, "-c", script],
        capture_output=True,
        timeout=60,
        check=False,
        env={**installed.env, "HOME": str(tmp_path)},
    )
    assert by_lftp.returncode == 0, by_lftp.stderr
    assert got.getvalue() and got.getvalue() == by_curl.stdout
    assert (tmp_path / "lftp.txt").read_bytes() == got.getvalue()

    deadline = time.monotonic() + 10
    while len([r for r in proxy.records() if r["event"] == "session.summary"]) < 3:
        assert time.monotonic() < deadline, "three sessions did not all end"
        time.sleep(0.05)
    assert proxy.stop() == 0
    records = proxy.records()
    assert [r for r in records if r["event"] == "proxy.internal_error"] == []
    summaries = [r for r in records if r["event"] == "session.summary"]
    assert [s.get("root_cause") for s in summaries] == [None, None, None]
    assert SANDBOX_PASSWORD not in {str(r.get("arg")) for r in records if r.get("verb") == "PASS"}

    analyzed = installed.run("analyze", "--format", "json", str(proxy.log))
    assert analyzed.returncode == 0, analyzed.stderr
    events = [json.loads(line)["event"] for line in analyzed.stdout.splitlines()]
    assert events.count("session.summary") == 3
