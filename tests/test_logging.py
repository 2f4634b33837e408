"""Structured logging: the console rendering, JSON lines, redaction, and raw relaying of
bytes that are not UTF-8 (logged with replacement characters, relayed untouched)."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from ftpdiag.console import ConsoleRenderer
from ftpdiag.logconfig import configure, emit, render_json, reset
from ftpdiag.testing import ProxyHandle

REPLY = {
    "session": "ab12",
    "code": 426,
    "text": "Failure writing network stream.",
    "command": "RETR",
    "arg": "big.bin",
    "latency_ms": 3.5,
    "state": ["logged_in"],
    "meaning": "Transfer aborted",
}
DIAGNOSIS = {
    "session": "ab12",
    "code": 426,
    "rule": "transfer.aborted",
    "severity": "error",
    "title": "Transfer aborted (426)",
    "explanation": "The data connection closed.",
    "remedy": "Retry and resume.",
    "evidence": {"bytes": 10},
}


@pytest.fixture
def streams() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    console, log_file = io.StringIO(), io.StringIO()
    configure(console, "console", log_file, verbosity=0, color=False)
    yield console, log_file
    reset()


def test_console_shows_the_diagnosis_indented_under_its_reply(
    streams: tuple[io.StringIO, io.StringIO],
) -> None:
    """A reply line, then its diagnosis with the explanation and the fix, indented below it."""
    console, _ = streams
    emit("reply", dict(REPLY))
    emit("diagnosis", dict(DIAGNOSIS))
    lines = console.getvalue().splitlines()
    assert "ab12 ← 426 Failure writing network stream." in lines[0] and lines[0].endswith("3.5 ms")
    assert lines[1].startswith(" " * 15 + "✗ Transfer aborted (426)")
    assert (
        lines[2].strip() == "The data connection closed."
        and lines[3].strip() == "Fix: Retry and resume."
    )
    assert all(len(line) <= 100 for line in lines)


PROXY_WIDE = [
    {"event": "tls.ca", "ca": "cfg/ftpdiag/ca.pem", "created": True, "hint": "trust it"},
    {"event": "proxy.exposed", "listen": "0.0.0.0:2121", "hint": "beyond loopback"},
    {"event": "access.refused", "client": "10.1.2.3:4000", "reason": "not in --allow-client"},
    {"event": "tls.insecure", "upstream": "127.0.0.1"},
    {
        "event": "proxy.internal_error",
        "session": "ab12",
        "error": "KeyError",
        "message": "'x'",
        "where": "ftpdiag.proxy.control:9 in feed",
        "traceback": "Traceback (most recent call last)",
    },
]


@pytest.mark.parametrize("record", PROXY_WIDE, ids=[r["event"] for r in PROXY_WIDE])
def test_proxy_wide_records_read_as_sentences_on_the_console(
    streams: tuple[io.StringIO, io.StringIO], record: dict[str, object]
) -> None:
    """Records a person meets on the first run are sentences, not ``key=value`` pairs; the
    traceback of an internal error stays in the JSON log."""
    console, log_file = streams
    emit(str(record["event"]), {k: v for k, v in record.items() if k != "event"})
    text = console.getvalue()
    assert "=" not in text and text.strip()
    assert "Traceback" not in text
    assert (
        "traceback" in json.loads(log_file.getvalue()) or record["event"] != "proxy.internal_error"
    )
    if record["event"] == "tls.ca":
        assert "curl --cacert cfg/ftpdiag/ca.pem" in text
    if record["event"] == "proxy.internal_error":
        assert "please report" in text and "--log-file" in text


def test_json_lines_carry_the_documented_fields(streams: tuple[io.StringIO, io.StringIO]) -> None:
    """Each record is one JSON object with event, session, timestamp (UTC ISO 8601) and level."""
    _, log_file = streams
    emit("reply", dict(REPLY))
    emit("diagnosis", dict(DIAGNOSIS))
    emit("data.connect", {"session": "ab12", "pipe": 1, "side": "client", "peer": "127.0.0.1:5"})
    records = [json.loads(line) for line in log_file.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["reply", "diagnosis", "data.connect"]
    assert [r["level"] for r in records] == ["info", "error", "debug"]
    assert all(r["session"] == "ab12" for r in records)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert all(stamp.match(r["timestamp"]) for r in records), records
    # UTC, and now (within a few seconds of the clock).
    logged = datetime.strptime(records[0]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(logged.replace(tzinfo=UTC).timestamp() - time.time()) < 5


def test_json_keeps_integers_beyond_64_bits() -> None:
    """orjson refuses them; the record is still written, by the standard library."""
    assert json.loads(render_json({"event": "transfer.start", "rest": 10**30})) == {
        "event": "transfer.start",
        "rest": 10**30,
    }


def test_quiet_console_hides_info_but_file_keeps_everything() -> None:
    """-q: only warnings and errors on the console; the file still gets every event."""
    console, log_file = io.StringIO(), io.StringIO()
    configure(console, "console", log_file, verbosity=-1, color=False)
    try:
        emit("reply", dict(REPLY))
        emit("diagnosis", dict(DIAGNOSIS))
    finally:
        reset()
    assert "←" not in console.getvalue() and "Transfer aborted" in console.getvalue()
    assert len(log_file.getvalue().splitlines()) == 2


def test_redaction_processor_masks_secret_keys(streams: tuple[io.StringIO, io.StringIO]) -> None:
    """A field named like a password never reaches a sink in clear."""
    _, log_file = streams
    emit("oops", {"session": "x", "password": "hunter2"})
    assert "hunter2" not in log_file.getvalue()
    assert json.loads(log_file.getvalue())["password"] == "****"


def test_capture_logs_sees_events() -> None:
    """structlog's capture_logs works with ftpdiag's emit (for users' own tests)."""
    with capture_logs() as logs:
        emit("command", {"session": "s1", "verb": "NOOP", "arg": ""})
    assert logs == [
        {"event": "command", "session": "s1", "verb": "NOOP", "arg": "", "log_level": "info"}
    ]


def test_colour_only_when_asked() -> None:
    """ANSI colours appear with color=True and never with color=False."""
    record = {"event": "diagnosis", "timestamp": "2026-01-01T00:00:00Z", **DIAGNOSIS}
    assert "\x1b[" in ConsoleRenderer(color=True)(dict(record))
    assert "\x1b[" not in ConsoleRenderer(color=False)(dict(record))


class RawUpstream:
    """A minimal byte-level server: greets, records what it receives, answers with raw bytes."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.address = self.sock.getsockname()
        self.answer = answer
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"220 raw\r\n")
            while not self.received.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            conn.sendall(self.answer)
            conn.recv(10)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=10)


def test_non_utf8_bytes_are_relayed_untouched(ftpdiag_proxy) -> None:  # type: ignore[no-untyped-def]
    """Invalid UTF-8 in a command and a reply crosses byte-exact and is logged with U+FFFD."""
    upstream = RawUpstream(b"250 r\xe9pertoire \xc3( ok\r\n")
    proxy: ProxyHandle = ftpdiag_proxy(upstream.address)
    with socket.create_connection(proxy.address, timeout=10) as client:
        assert client.recv(100) == b"220 raw\r\n"
        client.sendall(b"CWD d\xc3(\xe9r\r\n")
        answer = b""
        while not answer.endswith(b"\n"):
            answer += client.recv(100)
    upstream.close()
    assert upstream.received == b"CWD d\xc3(\xe9r\r\n"
    assert answer == b"250 r\xe9pertoire \xc3( ok\r\n"
    reply = proxy.wait_for("reply", command="CWD")
    assert (
        "\ufffd" in reply["text"]
        and proxy.wait_for("command", verb="CWD")["arg"] == "d\ufffd(\ufffdr"
    )


def test_twisted_failures_become_internal_errors_and_its_chatter_is_dropped() -> None:
    """Once the proxy took over Twisted's log, a failure Twisted reports is one
    ``proxy.internal_error`` (type, message with secrets scrubbed, innermost frame and
    traceback), informational events are dropped, and nothing is kept in Twisted's buffer."""
    from twisted.logger import Logger, globalLogBeginner
    from twisted.python.failure import Failure

    from ftpdiag.proxy.twistedlog import take_over_twisted_log

    take_over_twisted_log()
    take_over_twisted_log()  # a second proxy in the same process changes nothing
    logger = Logger(namespace="ftpdiag.proxy.glue")
    with capture_logs() as logs:
        try:
            raise ValueError("PASS hunter2")
        except ValueError:
            logger.failure("callback failed", Failure())
        logger.info("Starting factory {factory!r}", factory=object())
        logger.error("plain error")
    failure, plain = logs
    assert failure["event"] == plain["event"] == "proxy.internal_error"
    assert (failure["error"], failure["message"]) == ("ValueError", "PASS ****")
    assert failure["where"].startswith("tests.test_logging:")
    assert "ValueError: PASS ****" in failure["traceback"] and "hunter2" not in str(failure)
    assert plain == {
        "event": "proxy.internal_error",
        "error": "error",
        "message": "",
        "where": "ftpdiag.proxy.glue",
        "log_level": "warning",
    }
    assert globalLogBeginner._temporaryObserver is None  # the in-memory buffer is gone
