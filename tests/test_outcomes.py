"""The outcome model without sockets: what the user asked for, what came of it, and a root cause
only when something the user asked for failed or the session ended abnormally."""

from __future__ import annotations

from typing import Any

import pytest

from ftpdiag.rules.outcomes import Outcomes, is_probe, knowledge
from tests.test_rules_unit import close, command, end, greeting, reply, run, size, start

Fact = tuple[str, dict[str, Any]]


def summary(records: list[Fact]) -> dict[str, Any]:
    return next(f for e, f in records if e == "session.summary")


def errors(records: list[Fact]) -> list[str]:
    return [f["rule"] for e, f in records if e == "diagnosis" and f["severity"] == "error"]


def login(user: str = "diag") -> list[Fact]:
    return [
        command("USER", user),
        reply(331, "Password required", "USER", user, state=("before_login",)),
        command("PASS", "****"),
        reply(230, "Logged in", "PASS", "****", state=("before_login",)),
    ]


def download(path: str = "big.bin", n: int = 1000, pipe: int = 1) -> list[Fact]:
    return [
        command("RETR", path),
        start(pipe, path=path),
        reply(150, "Opening", "RETR", path, state=("logged_in", "transfer")),
        reply(226, "Transfer complete", "RETR", path),
        end(226, n, pipe=pipe, path=path),
    ]


def upload(path: str, code: int = 226, pipe: int = 1) -> list[Fact]:
    return [
        command("STOR", path),
        start(pipe, verb="STOR", path=path),
        reply(code, "done" if code == 226 else "No space left", "STOR", path),
        end(code, 10, pipe=pipe, verb="STOR", path=path),
    ]


def test_lftp_opts_utf8_before_login_is_an_info_note() -> None:
    """pyftpdlib answers lftp's pre-login OPTS UTF8 ON with 530: an info note, no root cause."""
    out = run(
        greeting(),
        command("OPTS", "UTF8 ON"),
        reply(530, "Log in with USER and PASS first.", "OPTS", "UTF8 ON", state=("before_login",)),
        *login(),
        command("LIST"),
        reply(150, "ok", "LIST"),
        reply(226, "ok", "LIST"),
        *size("big.bin", 1000),
        *download(),
        command("QUIT"),
        reply(221, "bye", "QUIT"),
        close("server closed"),
    )
    assert errors(out) == []
    note = next(f for e, f in out if e == "diagnosis" and f["rule"] == "command.probe_refused")
    assert note["severity"] == "info"
    s = summary(out)
    assert s["root_cause"] is None
    assert (s["operations"], s["succeeded"], s["failed"]) == (3, 3, 0)
    assert s["outcome_text"] == "all 3 operations succeeded"
    assert list(s)[:4] == ["operations", "succeeded", "failed", "cancelled"]  # said first


def test_refused_rest_probe_sets_no_offset() -> None:
    """REST 1 answered 502, then a complete download: not truncated (the REST changed nothing)."""
    out = run(
        *login(),
        *size("big.bin", 1000),
        command("REST", "1"),
        reply(502, "Command not implemented.", "REST", "1"),
        command("RETR", "big.bin"),
        start(rest=1),  # the core logged the offset the client asked for
        reply(226, "ok", "RETR", "big.bin"),
        end(226, 1000, rest=1),
        close(),
    )
    assert errors(out) == [] and summary(out)["root_cause"] is None


def test_accepted_rest_still_counts() -> None:
    """REST 600 answered 350 then 400 bytes of a 1000-byte file: complete, nothing to say."""
    out = run(
        *size("big.bin", 1000),
        command("REST", "600"),
        reply(350, "Restarting at 600", "REST", "600"),
        command("RETR", "big.bin"),
        start(rest=600),
        reply(226, "ok", "RETR", "big.bin"),
        end(226, 400, rest=600),
        close(),
    )
    assert errors(out) == [] and summary(out)["succeeded"] == 1


def test_refused_type_changes_no_type() -> None:
    """TYPE I refused (504): the transfer still runs in ASCII, so the binary warning holds."""
    out = run(
        command("TYPE", "I"),
        reply(504, "Not implemented for that parameter", "TYPE", "I"),
        start(path="x.zip", type_="I"),
    )
    assert [f["rule"] for e, f in out if e == "diagnosis"][-1] == "transfer.ascii_binary"


def test_mlsd_fallback_to_list_is_no_failure() -> None:
    """MLSD answered 500, then LIST works: one listing, succeeded."""
    out = run(
        *login(),
        command("MLSD"),
        reply(500, "Unknown command", "MLSD"),
        command("LIST"),
        reply(226, "ok", "LIST"),
        close(),
    )
    s = summary(out)
    assert errors(out) == [] and s["root_cause"] is None
    assert s["operations_by_kind"]["listing"] == {"ok": 1, "failed": 0, "cancelled": 0}


def test_one_of_three_uploads_failed() -> None:
    """The outcome line counts by kind, and the failure has a root cause."""
    out = run(
        *login(),
        *upload("a", pipe=1),
        *upload("b", 552, pipe=2),
        *upload("c", pipe=3),
        close(),
    )
    s = summary(out)
    assert s["outcome_text"] == "1 of 3 uploads failed"
    failed = [{"kind": "upload", "command": "STOR", "arg": "b", "code": 552}]
    assert s["failed_operations"] == failed
    assert s["root_cause"]["rule"] == "transfer.storage" and s["root_cause"]["remedy"]
    assert s["root_cause"]["reply_meaning"]  # the catalog's words, as evidence under it


def test_failed_login_and_vietnamese_outcome() -> None:
    """A refused password is a failed login; the outcome line is in the session's language."""
    facts = [
        command("USER", "bob"),
        reply(331, "Password", "USER", "bob", state=("before_login",)),
        command("PASS", "****"),
        reply(530, "Login incorrect.", "PASS", "****", state=("before_login",)),
        close(),
    ]
    assert summary(run(*facts))["outcome_text"] == "the login failed"
    from ftpdiag.rules.engine import Diagnoser

    vi = summary(run(*facts, engine=Diagnoser("vi")))
    assert vi["outcome_text"] == "lần đăng nhập đã thất bại"
    assert vi["root_cause"]["rule"] == "login.failed"


def test_abnormal_end_without_quit() -> None:
    """The server hanging up before QUIT ends the session abnormally: said in the outcome."""
    outcomes = Outcomes()
    for event, fields in [*login(), close("server closed")]:
        outcomes.observe(event, fields)
    assert outcomes.went_wrong and outcomes.abnormal == "server closed"
    assert "ended abnormally" in outcomes.text()
    quit_first = Outcomes()
    for event, fields in [*login(), command("QUIT"), close("server closed")]:
        quit_first.observe(event, fields)
    assert not quit_first.went_wrong and quit_first.text() == "the login succeeded"


def test_unfinished_transfer_fails() -> None:
    """A download still open when the session ends failed; its interruption is the cause."""
    out = run(*login(), command("RETR", "big.bin"), start(), end("closed", 10), close())
    s = summary(out)
    assert s["failed"] == 1 and s["root_cause"]["rule"] == "transfer.interrupted"


@pytest.mark.parametrize(
    ("verb", "code", "state", "probe"),
    [
        ("OPTS", 530, ("before_login",), True),
        ("CLNT", 500, ("logged_in",), True),
        ("SITE", 550, ("logged_in",), True),
        ("MDTM", 550, ("logged_in",), True),
        ("MLSD", 502, ("logged_in",), True),
        ("MLSD", 550, ("logged_in",), False),
        ("RETR", 550, ("logged_in",), False),
        ("LIST", 530, ("before_login",), False),
        ("PASS", 530, ("before_login",), False),
        ("FEAT", 211, ("logged_in",), False),
    ],
)
def test_is_probe(verb: str, code: int, state: tuple[str, ...], probe: bool) -> None:
    """Refused probes and fallbacks are told from failures of what the user asked for."""
    assert is_probe({"code": code, "command": verb, "state": list(state)}) is probe


def test_outcome_words_exist_in_both_languages() -> None:
    """Every kind has singular and plural words, and every template, in en and vi."""
    k = knowledge()
    kinds = {*k.kinds.values(), "connection", "command", "operation"}
    for lang in ("en", "vi"):
        words = k.text[lang]
        assert set(words) == set(k.text["en"]), lang
        for kind in kinds:
            assert len(words[kind]) == 2 and all(words[kind]), (lang, kind)


def test_console_puts_the_outcome_first_with_plurals_and_sensible_rates() -> None:
    """The summary's first line is the outcome; "1 transfer"; no rate for a tiny transfer."""
    from ftpdiag.console import ConsoleRenderer

    render = ConsoleRenderer(color=False)
    out = run(*login(), *upload("a", pipe=1), *upload("b", 552, pipe=2), close())
    text = render({"event": "session.summary", **summary(out)})
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "1 of 2 uploads failed."
    assert lines[1].startswith("Most likely cause:")
    healthy = run(*login(), close())
    assert "The login succeeded. No problems found" in render(
        {"event": "session.summary", **summary(healthy)}
    )
    closed = render(
        {"event": "session.close", "duration_ms": 5.0, "commands": 1, "transfers": 1, "bytes": 3}
    )
    assert "1 command · 1 transfer (3 B)" in closed
    tiny = {"command": "RETR", "path": "a", "bytes": 3, "duration_ms": 0.4, "outcome": 226}
    assert "/s" not in render({"event": "transfer.end", **tiny})
    big = {**tiny, "bytes": 8 << 20, "duration_ms": 16.0}
    assert "524.3 MB/s" in render({"event": "transfer.end", **big})
    slow = {**tiny, "bytes": 100_000, "duration_ms": 1000.0}
    assert "100.0 kB/s" in render({"event": "transfer.end", **slow})


def test_unclean_tls_close_fails_the_download() -> None:
    """A protected download reset by the server after its 226: tls.unclean_close, failed."""
    out = run(
        *login(),
        command("RETR", "big.bin"),
        start(),
        ("tls.established", {"side": "server", "channel": "data", "pipe": 1, "resumed": True}),
        reply(226, "ok", "RETR", "big.bin"),
        ("transfer.end", {**end(226, 1000)[1], "server_end": "reset", "client_end": "reset"}),
        close(),
    )
    assert errors(out) == ["tls.unclean_close"]
    assert summary(out)["outcome_text"] == "the download failed"


def test_an_attack_has_a_root_cause_though_nothing_failed() -> None:
    """A refused data-port theft is a root cause even when the transfer itself worked."""
    theft = ("security.data_theft_refused", {"pipe": 1, "side": "client", "peer": "127.0.0.2:9",
                                             "expected": "127.0.0.1"})  # fmt: skip
    out = run(*login(), *download(), theft, close())
    assert summary(out)["failed"] == 0
    assert summary(out)["root_cause"]["rule"] == "security.data_theft"


def test_refused_greeting_is_abnormal_whoever_hangs_up() -> None:
    """421 instead of 220 is a root cause even when the client closes before the server."""
    out = run(greeting(421, "Service not available"), close("client closed"))
    assert summary(out)["root_cause"]["rule"] == "greeting.refused"
    assert summary(out)["abnormal_end"] == "client closed"


def test_report_verdict_follows_the_outcome() -> None:
    """The HTML report leads with the outcome line, and a warning the session got around (a
    NAT address in PASV) is no "Something went wrong"."""
    from ftpdiag.report import build_report

    nat = (
        "data.passive",
        {"pipe": 1, "code": 227, "advertised": "10.0.0.5:5000", "dialled": "203.0.113.7:5000",
         "control_peer": "203.0.113.7"},
    )  # fmt: skip
    facts = [
        ("session.open", {"client": "127.0.0.1:5", "upstream": "203.0.113.7:21"}),
        *login(),
        nat,
        *download(),
        command("QUIT"),
        reply(221, "bye", "QUIT"),
        close("server closed"),
    ]
    records = [{"event": e, "session": "0001", "timestamp": "", **f} for e, f in facts]
    html = build_report(records)
    assert "All 2 operations succeeded." in html
    assert "Something went wrong" not in html and "No problem found" in html


def test_a_refused_size_the_client_quits_on_is_the_failed_download() -> None:
    """curl asks SIZE before RETR and, told 550, quits: the download failed, not found."""
    out = run(
        greeting(),
        *login(),
        command("SIZE", "missing.bin"),
        reply(550, "/missing.bin is not retrievable.", "SIZE", "missing.bin"),
        command("QUIT"),
        reply(221, "Goodbye", "QUIT"),
        close(),
    )
    assert errors(out) == ["file.not_found"]
    s = summary(out)
    assert s["root_cause"]["rule"] == "file.not_found" and s["failed"] == 1
    assert s["failed_operations"] == [
        {"kind": "download", "command": "RETR", "arg": "missing.bin", "code": 550}
    ]


@pytest.mark.parametrize("then", ["RETR", "STOR"])
def test_a_refused_size_the_client_goes_on_from_is_an_info_note(then: str) -> None:
    """A client that asks SIZE of a file it then uploads (or downloads anyway) recovered."""
    transfer = download("x.bin") if then == "RETR" else upload("x.bin")
    out = run(
        greeting(),
        *login(),
        command("SIZE", "x.bin"),
        reply(550, "No such file", "SIZE", "x.bin"),
        *transfer,
        command("QUIT"),
        reply(221, "Goodbye", "QUIT"),
        close(),
    )
    assert errors(out) == [] and summary(out)["root_cause"] is None
