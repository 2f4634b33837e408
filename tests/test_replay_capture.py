"""Public packet captures (``../shared/pcaps``) become servers: ``ftpdiag replay`` serves the
sessions ``ftpdiag analyze`` rebuilds from them, a client sending the captured commands gets
the captured replies, and ftpdiag in front of the replay names the root cause ``analyze`` names
from the capture."""

from __future__ import annotations

import ftplib
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest

from ftpdiag.analyze import analyze_records
from ftpdiag.capture import capture_sessions
from ftpdiag.replay.script import TRANSFER_VERBS
from ftpdiag.testing import ProxyHandle, ReplayHandle
from tests.test_capture_oracles import PCAPS
from tests.test_rules_e2e import settle

pytestmark = pytest.mark.timeout(60)

#: Captures whose one session a client can send again command by command (no TLS, no
#: pipelining, every transfer seen whole): a failed login, passive downloads and listings,
#: EPSV, a 550. (ndpi-ftp is left out: its capture stops in the middle of a download whose
#: 226 it holds, a truncation the replay faithfully reproduces and analyze does not see.)
CAPTURES = [
    "ndpi-ftp-failed",
    "sv-ftp-download-passive",
    "zeek-retr",
    "zeek-ipv6-multiline-reply",
]


def resend(address: tuple[str, int], records: list[dict[str, Any]]) -> list[Any]:
    """Send the recorded commands one by one (any password), opening a data connection for
    each transfer command after a passive reply; return every reply and the size of every
    transfer."""
    ftp = ftplib.FTP(timeout=5)
    seen: list[Any] = [ftp.connect(*address)]
    data: tuple[str, int] | None = None
    try:
        for record in records:
            if record["event"] != "command":
                continue
            verb, arg = record["verb"], record["arg"]
            conn = None
            if verb in TRANSFER_VERBS and data is not None:
                conn = socket.create_connection(data, timeout=5)
                data = None
            ftp.putcmd(f"{verb} {'x' if verb == 'PASS' else arg}".rstrip())
            resp = ftp.getmultiline()
            seen.append(resp)
            if resp.startswith("227"):
                data = ftplib.parse227(resp)
            elif resp.startswith("229"):
                data = ftplib.parse229(resp, address)
            if conn is not None:
                with conn:
                    got = b"".join(iter(lambda c=conn: c.recv(65536), b""))
                seen.append(len(got))
                if resp.startswith("1"):
                    seen.append(ftp.getmultiline())
        assert ftp.sock is not None
        ftp.sock.settimeout(0.3)  # replies that came unasked after the last one
        while True:
            seen.append(ftp.getmultiline())
    except (EOFError, TimeoutError):
        pass
    finally:
        ftp.close()
    return seen


def recorded_replies(records: list[dict[str, Any]]) -> list[str]:
    """What the captured server said, as ftplib hands replies over."""
    out = []
    for record in records:
        if record["event"] == "reply":
            lines = str(record["text"]).split("\n")
            code = record["code"]
            shown = [f"{code}-{lines[0]}", *lines[1:-1], f"{code} {lines[-1]}"]
            out.append(masked("\n".join(shown) if len(lines) > 1 else f"{code} {lines[0]}"))
    return out


def masked(value: Any) -> Any:
    """Passive addresses hidden: the replay names its own live listener instead."""
    if not isinstance(value, str):
        return value
    value = re.sub(r"\d+,\d+,\d+,\d+,\d+,\d+", "<address>", value)
    return re.sub(r"\(\|\|\|\d+\|\)", "(|||<port>|)", value)


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_replayed(
    name: str,
    ftpdiag_replay: Callable[..., ReplayHandle],
    ftpdiag_proxy: Callable[..., ProxyHandle],
) -> None:
    """The captured commands get the captured replies, and the captured transfers' sizes, from
    the replay; ftpdiag in front of it names the root cause analyze names from the capture."""
    path = PCAPS / f"{name}.pcap"
    (records,) = capture_sessions(str(path))
    replay = ftpdiag_replay(path)
    seen = resend(replay.address, records)
    assert [masked(s) for s in seen if isinstance(s, str)] == recorded_replies(records)
    sizes = [r["bytes"] for r in records if r["event"] == "transfer.end" and r["bytes"]]
    assert [s for s in seen if isinstance(s, int) and s] == sizes
    assert not replay.mismatches
    proxy = ftpdiag_proxy(replay.address)
    assert [masked(s) for s in resend(proxy.address, records)] == [masked(s) for s in seen]
    settle(proxy)
    (summary,) = [r for r in analyze_records(records) if r["event"] == "session.summary"]
    live = proxy.events[-1]
    assert live["event"] == "session.summary"
    assert (live["root_cause"] or {}).get("rule") == (summary["root_cause"] or {}).get("rule")
