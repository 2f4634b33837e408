"""A bug of ftpdiag costs one session, visibly and reportably, and never leaves a client hanging.

The fault is injected into the running proxy: the rule texts' data file goes missing (the bug a
wheel without ``diagnoses.toml`` had: the first diagnosis, at the greeting, fails), or the
engine fails on ``PASS`` with a message that quotes the password. Each real client (ftplib,
curl, lftp) must get ``421`` and see the connection closed, long before its own timeout.
"""

from __future__ import annotations

import ftplib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ftpdiag.rules import engine
from ftpdiag.testing import ProxyHandle
from tests.interop.servers import unavailable

SECRET = "s3cret-pw"
#: Well below every client's own timeout (20 s here): a client that waited for one failed.
PROMPT = 5.0


@pytest.fixture(params=["greeting", "login"])
def broken_proxy(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ftpdiag_sandbox: Callable[..., Any],
    ftpdiag_proxy: Callable[..., ProxyHandle],
) -> Iterator[tuple[str, ProxyHandle, Any]]:
    """A proxy in front of the sandbox whose session fails at ``request.param``."""
    server = ftpdiag_sandbox(root=tmp_path / "root", user="bob", password=SECRET)
    (server.root / "f.txt").write_bytes(b"x")
    if request.param == "greeting":
        empty = tmp_path / "no-rules"
        empty.mkdir()
        # the engine's own view of the package data only (the catalog still loads)
        monkeypatch.setattr(engine, "resources", SimpleNamespace(files=lambda _package: empty))
        engine.rule_texts.cache_clear()
    else:
        process = engine.Diagnoser.process

        def failing(self: engine.Diagnoser, event: str, fields: dict[str, Any]) -> Any:
            if event == "command" and fields.get("verb") == "PASS":
                raise ValueError(f"cannot handle b'PASS {SECRET}\\r\\n'")
            return process(self, event, fields)

        monkeypatch.setattr(engine.Diagnoser, "process", failing)
    yield request.param, ftpdiag_proxy(server.address), server
    engine.rule_texts.cache_clear()


def _internal_error(proxy: ProxyHandle, phase: str) -> dict[str, Any]:
    record = proxy.wait_for("proxy.internal_error")
    assert SECRET not in str(record)
    if phase == "greeting":
        assert record["error"] == "FileNotFoundError" and "diagnoses.toml" in record["message"]
        assert record["where"].startswith("ftpdiag.rules.engine:")
        assert record["where"].endswith(" in rule_texts")
    else:
        assert (record["error"], record["message"]) == (
            "ValueError",
            r"cannot handle b'PASS ****\r\n'",
        )
        assert record["where"].startswith("ftpdiag.")
    assert "Traceback (most recent call last)" in record["traceback"]
    assert [e for e in proxy.events if e["event"] == "proxy.internal_error"] == [record]
    return record


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed: scripts/test.sh installs it (as root, on Debian)")
    return path


def test_ftplib_gets_421_and_a_closed_connection(
    broken_proxy: tuple[str, ProxyHandle, Any],
) -> None:
    """ftplib gets ``421`` and then end of file: the proxy closed the connection."""
    phase, proxy, _ = broken_proxy
    ftp = ftplib.FTP()
    with pytest.raises(ftplib.error_temp, match=r"^421 ftpdiag: internal error"):
        ftp.connect(*proxy.address, timeout=PROMPT)
        ftp.login("bob", SECRET)
    assert ftp.sock is not None
    ftp.sock.settimeout(PROMPT)
    assert ftp.sock.recv(100) == b""  # closed by the proxy, not left open
    ftp.close()
    _internal_error(proxy, phase)


def test_curl_gets_421_and_returns(broken_proxy: tuple[str, ProxyHandle, Any]) -> None:
    """curl reads ``421`` (its exit code 28 is how curl names a 421) and returns at once."""
    phase, proxy, _ = broken_proxy
    url = f"ftp://bob:{SECRET}@{proxy.host}:{proxy.port}/f.txt"
    started = time.monotonic()
    done = subprocess.run(
        [_tool("curl"), "-v", "--max-time", "20", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < PROMPT, "curl waited for its own timeout"
    assert done.returncode != 0 and "< 421 ftpdiag: internal error" in done.stderr
    _internal_error(proxy, phase)


def test_lftp_gets_421_and_returns(
    broken_proxy: tuple[str, ProxyHandle, Any], tmp_path: Path
) -> None:
    """lftp reads ``421`` and, allowed no retry, gives up at once instead of hanging."""
    phase, proxy, _ = broken_proxy
    script = (
        "set net:max-retries 1; set net:timeout 20; set ftp:ssl-allow no; "
        f"open -u bob,{SECRET} -p {proxy.port} {proxy.host}; get f.txt -o {tmp_path / 'f'}"
    )
    started = time.monotonic()
    done = subprocess.run(
        [_tool("lftp"), "-d", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert time.monotonic() - started < PROMPT, "lftp waited for its own timeout"
    assert done.returncode != 0 and "<--- 421 ftpdiag: internal error" in done.stderr
    _internal_error(proxy, phase)
