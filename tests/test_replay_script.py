"""The replay's sans-IO half: records in, a script out, and one connection matched against it —
no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from ftpdiag.replay.script import (
    Matcher,
    Mismatch,
    RecordedReply,
    ScriptError,
    Step,
    Transfer,
    Unrecorded,
    build_script,
    normalise,
    sessions_in,
)


def cmd(verb: str, arg: str = "", session: str = "ab12") -> dict[str, Any]:
    return {"event": "command", "session": session, "verb": verb, "arg": arg}


def rep(
    code: int, text: str, command: str | None, latency: float = 1.0, **extra: Any
) -> dict[str, Any]:
    return {
        "event": "reply",
        "session": extra.pop("session", "ab12"),
        "code": code,
        "text": text,
        "command": command,
        "latency_ms": latency,
        "unsolicited": False,
        **extra,
    }


def ev(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "session": "ab12", **fields}


LOGIN = [
    ev("session.open", client="127.0.0.1:1", upstream="127.0.0.1:2"),
    rep(220, "ready", None, 2.5),
    cmd("USER", "user"),
    rep(331, "Password?", "USER"),
    cmd("PASS", "****"),
    rep(230, "Logged in.", "PASS"),
]


def download(end: dict[str, Any], *middle: dict[str, Any], prelim: bool = True) -> list[Any]:
    """PASV, RETR with a transfer ending as ``end`` says, then the final reply."""
    start = {"pipe": 1, "command": "RETR", "path": "f.bin", "direction": "download"}
    records = [
        cmd("PASV"),
        rep(227, "Entering passive mode (10,0,0,1,4,1).", "PASV"),
        cmd("RETR", "f.bin"),
        ev("transfer.start", **start),
    ]
    if prelim:
        records.append(rep(150, "Opening.", "RETR"))
    records += middle
    if isinstance(end.get("outcome", 226), int):
        records.append(rep(end.get("outcome", 226), "Done.", "RETR"))
    records.append(ev("transfer.end", **start, **{"bytes": 5000, "server_end": "eof", **end}))
    return [*LOGIN, *records]


def test_wire_single_and_multiline() -> None:
    """Replies go out in RFC 959 form; inner lines are kept as recorded, even code-like ones."""
    assert RecordedReply(230, "Logged in.").wire == b"230 Logged in.\r\n"
    multi = RecordedReply(214, "Help:\n211 looks like an end\nHelp OK.")
    assert multi.wire == b"214-Help:\r\n211 looks like an end\r\n214 Help OK.\r\n"


def test_normalise_arguments() -> None:
    """Secrets and ephemeral ports are not compared; type codes ignore case and spacing."""
    assert normalise("PASS", "hunter2") == ""
    assert normalise("PORT", "127,0,0,1,4,1") == ""
    assert normalise("type", " i ") == "I"
    assert normalise("RETR", "Dir/File.bin") == "Dir/File.bin"


def test_greeting_steps_and_flexible_table() -> None:
    """The greeting, the ordered commands, and FEAT/TYPE in the per-verb table."""
    records = [*LOGIN, cmd("FEAT"), rep(211, "Features:\n UTF8\nEnd", "FEAT"), cmd("QUIT")]
    records.append(rep(221, "Bye.", "QUIT"))
    script = build_script(records)
    assert script.greeting == (RecordedReply(220, "ready", 0.0025),)
    assert [s.verb for s in script.steps] == ["USER", "PASS", "QUIT"]
    assert list(script.flexible) == [("FEAT", "")]
    assert script.summary()["flexible"] == ["FEAT"]


def test_pass_matches_any_password_and_never_shows_it() -> None:
    """PASS is matched on its verb; a mismatch never repeats the password sent."""
    matcher = Matcher(build_script(LOGIN))
    assert isinstance(matcher.match("USER", "user"), Step)
    assert isinstance(matcher.match("PASS", "anything"), Step)
    other = Matcher(build_script(LOGIN))
    found = other.match("PASS", "s3cret")
    assert found == Mismatch("PASS ****", "USER user")
    assert "s3cret" not in str(found)


def test_mismatch_and_end_of_recording() -> None:
    """A command out of order reports expected and actual; past the end, expected is None."""
    matcher = Matcher(build_script(LOGIN))
    assert matcher.match("USER", "other") == Mismatch("USER other", "USER user")
    matcher.match("USER", "user")
    matcher.match("PASS", "x")
    assert matcher.match("RETR", "f") == Mismatch("RETR f", None)
    assert str(matcher.match("CWD", "/")) == "expected (end of recording), got CWD /"


def test_flexible_any_order_cycling_and_unrecorded() -> None:
    """TYPE is answered wherever it comes, by argument, cycling; an unrecorded one is said."""
    records = [*LOGIN, cmd("TYPE", "I"), rep(200, "Binary.", "TYPE")]
    records += [cmd("TYPE", "A"), rep(200, "ASCII.", "TYPE"), cmd("QUIT"), rep(221, "Bye", "QUIT")]
    matcher = Matcher(build_script(records))
    first = matcher.match("TYPE", "a")
    assert isinstance(first, Step) and first.final[0].text == "ASCII."
    matcher.match("USER", "user")
    again = matcher.match("type", "i")
    assert isinstance(again, Step) and again.final[0].text == "Binary."
    assert matcher.match("SYST", "") == Unrecorded("SYST")


def test_pipelined_replies_go_to_their_commands() -> None:
    """Two commands sent before either answer: each reply is filed under its own command."""
    records = [*LOGIN, cmd("CWD", "a"), cmd("CWD", "b")]
    records += [rep(250, "in a", "CWD"), rep(550, "no b", "CWD")]
    steps = build_script(records).steps
    assert [(s.arg, s.final[0].code) for s in steps[2:]] == [("a", 250), ("b", 550)]


def test_unsolicited_and_idle_421_follow_the_last_step() -> None:
    """A reply with no command after the login is sent after the last step, then the close."""
    records = [*LOGIN, rep(421, "Timeout.", None), ev("control.closed", side="server")]
    last = build_script(records).steps[-1]
    assert [r.code for r in last.final] == [230, 421] and last.close


def test_greeting_refusal_closes() -> None:
    """421 instead of the greeting and the server's close: the script closes after it."""
    records = [rep(421, "Too many.", None), ev("control.closed", side="server")]
    records.insert(0, ev("session.open"))
    script = build_script(records)
    assert script.close_after_greeting and script.greeting[0].code == 421 and not script.steps


def test_no_greeting() -> None:
    """A server that never spoke has an empty greeting."""
    records = [ev("session.open"), ev("greeting.timeout", seconds=1), cmd("USER", "u")]
    assert build_script(records).greeting == ()


def transfer_of(records: list[dict[str, Any]]) -> Transfer | None:
    return next(s for s in build_script(records).steps if s.verb == "RETR").transfer


@pytest.mark.parametrize(
    ("end", "middle", "ending"),
    [
        ({"outcome": 226}, [], "eof"),
        ({"outcome": 426, "server_end": "reset"}, [], "reset"),
        ({"outcome": 426, "server_end": "closed"}, [], "hold"),
        (
            {"outcome": "closed", "server_end": "never"},
            [ev("transfer.progress", pipe=1, bytes=5000)] * 2,
            "hold",
        ),
        ({"outcome": "closed", "server_end": "never"}, [], "eof"),
        (
            {"outcome": "closed", "server_end": "eof", "first_closed": "client"},
            [],
            "hold",
        ),
        (
            {"outcome": 425, "bytes": 0},
            [ev("data.failed", pipe=1, side="server", kind="refused")],
            "refused",
        ),
        ({"outcome": 425, "bytes": 0, "server_end": "never"}, [], "never"),
    ],
)
def test_transfer_endings(end: dict[str, Any], middle: list[Any], ending: str) -> None:
    """How the recorded server's data end finished becomes what the replay does."""
    transfer = transfer_of(download(end, *middle))
    assert transfer is not None and transfer.ending == ending


def test_refused_transfer_serves_no_data() -> None:
    """A 550 with no preliminary reply moved no data: the step has no transfer."""
    assert transfer_of(download({"outcome": 550, "bytes": 0}, prelim=False)) is None


def test_recorded_bytes_are_named() -> None:
    """A ``transfer.data`` record (proxy --record-data) names the file to serve."""
    records = download({"outcome": 226}, ev("transfer.data", pipe=1, file="d/ab12-1.bin"))
    transfer = transfer_of(records)
    assert transfer is not None and transfer.data_file == "d/ab12-1.bin"
    assert transfer.size == 5000 and transfer.path == "f.bin"


def test_upcoming_transfer_after_pasv() -> None:
    """After PASV the matcher knows how the next data connection will end."""
    matcher = Matcher(build_script(download({"outcome": 226})))
    for verb, arg in (("USER", "user"), ("PASS", ""), ("PASV", "")):
        matcher.match(verb, arg)
    upcoming = matcher.upcoming_transfer()
    assert upcoming is not None and upcoming.ending == "eof"


def test_latency_from_timestamps_when_missing() -> None:
    """An importer without latencies: the timestamps' difference is the delay."""
    records = [
        {**cmd("USER", "u"), "timestamp": "2026-01-01T00:00:00.000000Z"},
        {**rep(331, "pw", "USER"), "latency_ms": None, "timestamp": "2026-01-01T00:00:00.250000Z"},
    ]
    assert build_script(records).steps[0].final[0].at == pytest.approx(0.25)


def test_sessions_and_errors() -> None:
    """The first session by default, another by id, and plain errors for bad input."""
    records = [*LOGIN, cmd("NOOP", session="cd34"), rep(200, "ok", "NOOP", session="cd34")]
    assert sessions_in(records) == ["ab12", "cd34"]
    assert build_script(records).session == "ab12"
    assert build_script(records, "cd34").flexible
    with pytest.raises(ScriptError, match=r"no session 'zz'.*ab12, cd34"):
        build_script(records, "zz")
    with pytest.raises(ScriptError, match="no FTP session"):
        build_script([{"event": "proxy.listen"}])


def test_dial_before_answering_port() -> None:
    """A server that connected back before its 200 to PORT (pyftpdlib) is replayed so."""
    records = [*LOGIN, cmd("PORT", "127,0,0,1,4,1"), ev("data.connect", pipe=1, side="server")]
    records += [rep(200, "Active data connection established.", "PORT")]
    records += [cmd("EPRT", "|1|127.0.0.1|1025|"), rep(200, "EPRT ok.", "EPRT")]
    port, eprt = build_script(records).steps[2:]
    assert port.dial_now and not eprt.dial_now


def test_line_that_is_no_reply_goes_out_as_is() -> None:
    """``protocol.malformed_reply`` text is sent back as the bare line the server sent."""
    records = [*LOGIN, cmd("NOOP"), rep(200, "ok", "NOOP")]
    records.append(ev("protocol.malformed_reply", text="this is not a reply"))
    (noop,) = build_script(records).flexible[("NOOP", "")]
    assert [r.wire for r in noop.final] == [b"200 ok\r\n", b"this is not a reply\r\n"]
