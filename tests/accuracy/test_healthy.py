"""Healthy sessions raise no alarm: every client × mode against every server, through the proxy.

Each cell runs one real client's ordinary job (list, download, upload, and for lftp a
multi-connection pget) through a fresh proxy in front of a real server, checks the bytes, and
then holds every session the proxy saw to the rule: everything the user asked for worked, so
no diagnosis is an error and no root cause is named. The probes, fallbacks and segment closes
of real clients (lftp's OPTS UTF8 ON and AUTH TLS, ncftp's SITE and CLNT, curl's EPSV, pget's
REST ranges) are exactly what used to be mistaken for failures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ftpdiag.testing import ProxyHandle
from tests.accuracy.clients import CLIENTS, Job
from tests.accuracy.conftest import TALLY, Served, alarms, sessions, summary_of, transcript

pytestmark = pytest.mark.timeout(90)

DATA = os.urandom(3 * 1024 * 1024 + 1234)


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_healthy_session_has_no_alarm(
    served: Served,
    client: str,
    ftpdiag_proxy: Callable[..., ProxyHandle],
    tmp_path: Path,
) -> None:
    """A client's ordinary job against a real server: no error diagnosis, no root cause."""
    data = served.root / "data.bin"
    data.write_bytes(DATA)
    if os.geteuid() == 0 and served.name != "pyftpdlib":
        os.chown(data, data.parent.stat().st_uid, data.parent.stat().st_gid)
    proxy = ftpdiag_proxy(served.address)
    job = Job(proxy.host, proxy.port, served.user, served.password, DATA, served.root, tmp_path)
    CLIENTS[client](job)
    found = []
    for session in sessions(proxy):
        TALLY.healthy += 1
        problems = alarms(session)
        summary = summary_of(session)
        assert summary["failed"] == 0 or problems, transcript(session)  # failures are explained
        if problems:
            TALLY.false_alarms.append(f"{client} × {served.name}: {problems}")
            found.append(transcript(session))
    assert not found, f"{client} × {served.name}: healthy sessions diagnosed as failing:\n" + (
        "\n\n".join(found)
    )
