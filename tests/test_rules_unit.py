"""The diagnosis engine without sockets: fact sequences in, diagnoses and summaries out.

Also the consistency of the rule data: every rule id a check can produce has its prose in
``diagnoses.toml`` and vice versa, and every rule renders a title, an explanation and a remedy.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.core.transfers import UPLOAD_VERBS
from ftpdiag.rules import checks
from ftpdiag.rules.catalog import SEVERITIES
from ftpdiag.rules.checks import SLOW_REPLY_MS, Finding
from ftpdiag.rules.engine import Diagnoser, fill, rule_texts
from ftpdiag.rules.server_messages import known_messages

Fact = tuple[str, dict[str, Any]]
CHECKS_SOURCE = Path(inspect.getfile(checks)).read_text(encoding="utf-8")


# ---- fact builders -------------------------------------------------------------------------
def reply(
    code: int,
    text: str = "",
    command: str | None = None,
    arg: str | None = None,
    state: Iterable[str] = ("logged_in",),
    latency_ms: float | None = 1.0,
    unsolicited: bool = False,
    mismatched: Iterable[int] = (),
    upstream: str | None = None,
    pipe: int | None = None,
) -> Fact:
    return "reply", {
        "code": code,
        "text": text,
        "command": command,
        "arg": arg,
        "upstream_command": upstream,
        "pipe": pipe,
        "latency_ms": latency_ms,
        "state": list(state),
        "unsolicited": unsolicited,
        "mismatched_codes": list(mismatched),
    }


def greeting(code: int = 220, text: str = "ready", latency_ms: float = 1.0) -> Fact:
    return reply(code, text, state=("greeting", "before_login"), latency_ms=latency_ms)


def command(verb: str, arg: str = "") -> Fact:
    return "command", {"verb": verb, "arg": arg}


def start(
    pipe: int = 1, verb: str = "RETR", path: str = "big.bin", type_: str = "I", rest: int = 0
) -> Fact:
    direction = "upload" if verb in UPLOAD_VERBS else "download"
    return "transfer.start", {
        "pipe": pipe,
        "command": verb,
        "path": path,
        "direction": direction,
        "mode": {"client": "passive", "server": "passive"},
        "type": type_,
        "rest": rest,
    }


def end(
    outcome: int | str,
    moved: int,
    pipe: int = 1,
    verb: str = "RETR",
    path: str = "big.bin",
    client_end: str = "eof",
    server_end: str = "eof",
    aborted_by: str | None = None,
    type_: str = "I",
    rest: int = 0,
) -> Fact:
    _, fields = start(pipe, verb, path, type_, rest)
    return "transfer.end", {
        **fields,
        "bytes": moved,
        "duration_ms": 100.0,
        "rate_mbps": 1.0,
        "outcome": outcome,
        "client_end": client_end,
        "server_end": server_end,
        "first_closed": "server",
        "aborted_by": aborted_by,
    }


def progress(moved: int, pipe: int = 1, elapsed_ms: float = 100.0) -> Fact:
    return "transfer.progress", {
        "pipe": pipe,
        "command": "RETR",
        "path": "big.bin",
        "bytes": moved,
        "elapsed_ms": elapsed_ms,
        "rate_mbps": 1.0,
    }


def close(reason: str = "client closed") -> Fact:
    return "session.close", {
        "reason": reason,
        "duration_ms": 1000.0,
        "commands": 3,
        "replies": 3,
        "replies_by_class": {"2xx": 3},
        "transfers": 0,
        "bytes": 0,
    }


def size(path: str, n: int) -> list[Fact]:
    return [command("SIZE", path), reply(213, str(n), "SIZE", path)]


def run(*facts: Fact | list[Fact], engine: Diagnoser | None = None) -> list[Fact]:
    """Feed the facts (lists are flattened) and return every record the engine produced."""
    engine = engine or Diagnoser()
    out: list[Fact] = []
    for item in facts:
        for event, fields in item if isinstance(item, list) else [item]:
            out.extend(engine.process(event, dict(fields)))
    return out


def diagnoses(records: list[Fact], rule: str | None = None) -> list[dict[str, Any]]:
    return [f for e, f in records if e == "diagnosis" and (rule is None or f["rule"] == rule)]


def rules(records: list[Fact]) -> list[str]:
    return [d["rule"] for d in diagnoses(records)]


def summary(records: list[Fact]) -> dict[str, Any]:
    found = [f for e, f in records if e == "session.summary"]
    assert len(found) == 1
    return found[0]


# ---- the rule data ---------------------------------------------------------------------------
def _check_modules() -> list[Path]:
    """The source files of every check the engine runs (checks.py, and any module wired in)."""
    return sorted({Path(inspect.getfile(check)) for check in (*checks.CHECKS, checks.FALLBACK)})


def _produced_rules() -> set[str]:
    """Every ``Finding("rule.id", ...)`` literal in the modules of the registered checks."""
    found = {m.rule for m in known_messages()}  # server_messages.py takes them from its data
    for path in _check_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                first = node.args[0]
                where = f"{path.name}:{node.lineno}"
                if path.name == "server_messages.py":
                    continue
                assert isinstance(first, ast.Constant), (
                    f"{where}: spell the rule id out as a literal"
                )
                found.add(first.value)
    return found


def test_every_rule_has_prose_and_every_prose_has_a_rule() -> None:
    """The rule ids the checks produce and the entries of diagnoses.toml are the same set."""
    produced, described = _produced_rules(), set(rule_texts())
    assert produced - described == set(), "rules without an entry in diagnoses.toml"
    assert described - produced == set(), "entries in diagnoses.toml that no check produces"


def test_rule_entries_are_valid() -> None:
    """Severities are known; only the generic fallback takes its severity from the catalog."""
    for rule, text in rule_texts().items():
        assert text.severity in SEVERITIES or rule == "reply.explained", rule
    assert rule_texts()["reply.explained"].severity == ""


# A code for each rule that borrows prose from the catalog (no title/explanation/remedy of its own).
CATALOG_CODES = {
    "reply.explained": 550,
    "data.cannot_open_active": 425,
    "data.cannot_open_passive": 425,
    "transfer.storage": 452,
    "file.permission": 550,
    "file.not_found": 550,
}


@pytest.mark.parametrize("rule", sorted(rule_texts()))
def test_every_rule_renders_title_explanation_and_remedy(rule: str) -> None:
    """With its evidence filled in, a rule renders non-empty texts without leftover placeholders."""
    text = rule_texts()[rule]
    placeholders = {
        name
        for t in (text.title, text.explanation, text.remedy)
        for name in re.findall(r"\{([a-z_]+)\}", t)
    }
    evidence: dict[str, Any] = {name: f"<{name}>" for name in placeholders}
    for name, words in text.phrases.items():
        evidence[name] = next(iter(words))
    code = CATALOG_CODES.get(rule)
    rendered = Diagnoser().render(Finding(rule, code, evidence), {"code": code, "command": "RETR"})
    assert rendered["title"] and rendered["explanation"], rule
    assert rendered["remedy"], rule
    for field in ("title", "explanation", "remedy"):
        assert "{" not in rendered[field] and "unknown" not in rendered[field], (rule, field)
    if rendered["severity"] == "info":
        assert rendered["remedy"] == "Nothing to fix."


def _events_compared(check: Any) -> set[str]:
    """The event names a check's body compares ``event`` with (``==``, ``!=``, ``in``)."""
    tree = ast.parse(inspect.getsource(check))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and getattr(node.left, "id", None) == "event":
            for right in node.comparators:
                values = right.elts if isinstance(right, ast.Tuple | ast.Set) else [right]
                found |= {v.value for v in values if isinstance(v, ast.Constant)}
    return found


@pytest.mark.parametrize(
    "check", [*checks.CHECKS, checks.FALLBACK], ids=lambda c: c.__name__
)
def test_each_check_is_routed_the_events_it_reads(check: Any) -> None:
    """``@handles`` routes facts to a check; it must name exactly the events its body tests,
    or a rule would silently never fire (or cost time on facts it ignores)."""
    assert check.handles == _events_compared(check)


def test_phrase_tables_cover_every_value() -> None:
    """Every abort cause checks.py can return has words in diagnoses.toml, and no others."""
    tree = ast.parse(CHECKS_SOURCE)
    function = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_abort_cause"
    )
    causes = {
        n.value.value
        for n in ast.walk(function)
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant)
    }
    assert set(rule_texts()["transfer.aborted"].phrases["cause"]) == causes


def test_fill_optional_parts_and_unknown_values() -> None:
    """[Bracketed] parts vanish when a value is missing; bare missing values read 'unknown'."""
    template = "after {bytes} bytes[ of {expected} ({percent} %)] by {who}"
    assert (
        fill(template, {"bytes": 5, "expected": 10, "percent": 50.0, "who": "x"})
        == "after 5 bytes of 10 (50.0 %) by x"
    )
    assert (
        fill(template, {"bytes": 5, "expected": None, "percent": None})
        == "after 5 bytes by unknown"
    )


# ---- greeting and login ----------------------------------------------------------------------
def test_plain_session_has_no_root_cause() -> None:
    """220 and 230 are info diagnoses; the summary finds no problem."""
    out = run(
        greeting(),
        command("USER", "u"),
        reply(331, "", "USER", state=("before_login",)),
        command("PASS", "****"),
        reply(230, "ok", "PASS", state=("before_login",)),
        close(),
    )
    assert rules(out) == ["greeting.ready", "login.ok"]
    assert summary(out)["root_cause"] is None and summary(out)["diagnoses"] == []


def test_reply_gains_its_meaning() -> None:
    """Every reply record gets the catalog title of its code as ``meaning``."""
    out = run(greeting())
    assert out[0][0] == "reply" and out[0][1]["meaning"]


def test_delayed_greeting_outranks_the_wait() -> None:
    """120 then 220: both warnings, and the delay (higher priority) is the root cause."""
    out = run(greeting(120, "wait"), greeting(220, "ready", latency_ms=750.0), close())
    assert rules(out) == ["greeting.wait", "greeting.delayed"]
    assert "750.0 ms" in diagnoses(out, "greeting.delayed")[0]["title"]
    assert summary(out)["diagnoses"][0]["rule"] == "greeting.delayed"
    assert summary(out)["root_cause"] is None  # slow, but nothing the user asked for failed


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Too many connections (8) from this IP", "greeting.too_many"),
        ("Service not available", "greeting.refused"),
    ],
)
def test_421_greeting(text: str, rule: str) -> None:
    """421 at the greeting: a connection limit or a plain refusal, told from the text."""
    assert rules(run(greeting(421, text))) == [rule]


def test_greeting_timeout() -> None:
    """The proxy's greeting timer firing is a missing greeting."""
    out = run(("greeting.timeout", {"seconds": 0.5}))
    assert diagnoses(out)[0]["rule"] == "greeting.missing" and "0.5 s" in diagnoses(out)[0]["title"]


@pytest.mark.parametrize(
    ("user", "cmd", "text", "rule"),
    [
        ("alice", "PASS", "Login incorrect.", "login.failed"),
        ("anonymous", "PASS", "Anonymous access not allowed.", "login.anonymous_refused"),
        ("alice", "USER", "Non-anonymous sessions must use encryption.", "tls.required"),
        (
            "alice",
            "PASS",
            "Sorry, the maximum number of clients (2) from your host are already connected.",
            "login.too_many",
        ),
    ],
)
def test_login_refusals(user: str, cmd: str, text: str, rule: str) -> None:
    """530 after USER/PASS: wrong password, anonymous disabled, TLS required, too many."""
    out = run(
        command("USER", user),
        reply(331, "", "USER", user, ("before_login",)),
        command("PASS", "****"),
        reply(530, text, cmd, state=("before_login",)),
    )
    assert rules(out) == [rule]
    assert diagnoses(out)[0]["code"] == 530


# ---- data connections ------------------------------------------------------------------------
def _passive(advertised: str, peer: str = "127.0.0.1") -> Fact:
    return "data.passive", {
        "pipe": 1,
        "code": 227,
        "advertised": advertised,
        "dialled": f"{peer}:5000",
        "control_peer": peer,
    }


def test_pasv_nat_mismatch() -> None:
    """A private address in 227 from a public server is the NAT misconfiguration."""
    assert rules(run(_passive("10.0.0.5:5000", "203.0.113.9"))) == ["pasv.nat_mismatch"]
    assert rules(run(_passive("127.0.0.1:5000"))) == []


@pytest.mark.parametrize(
    ("side", "client_mode", "server_mode", "rule"),
    [
        ("server", "passive", "passive", "pasv.unreachable"),
        ("server", "passive", "active", "active.server_never_connected"),
        ("client", "passive", "passive", "data.client_never_connected"),
        ("client", "active", "passive", "active.client_unreachable"),
    ],
)
def test_data_failures(side: str, client_mode: str, server_mode: str, rule: str) -> None:
    """Which end of the data connection failed, in which mode, names the rule."""
    out = run(
        (
            "data.failed",
            {
                "pipe": 1,
                "side": side,
                "kind": "refused",
                "detail": "refused",
                "client_mode": client_mode,
                "server_mode": server_mode,
            },
        )
    )
    assert rules(out) == [rule]


def test_data_setup_replies() -> None:
    """EPSV/EPRT refusals, PORT refusal and 425 in each mode."""
    out = run(
        reply(502, "no", "EPSV"),
        reply(500, "no", "EPRT"),
        reply(501, "no", "PORT"),
        reply(425, "no", "RETR", state=("logged_in", "active")),
        reply(425, "no", "RETR", state=("logged_in", "passive")),
    )
    assert rules(out) == [
        "epsv.refused",
        "eprt.refused",
        "active.port_refused",
        "data.cannot_open_active",
        "data.cannot_open_passive",
    ]


def test_translated_data_commands_are_judged_by_what_the_server_got() -> None:
    """With --upstream-mode active the server answers PORT for the client's PASV: 200 is fine,
    and a 501 is a refused PORT, not a refused PASV."""
    opened = ("session.open", {"client": "c", "upstream": "u", "upstream_mode": "active"})
    assert rules(run(opened, reply(200, "PORT ok", "PASV", upstream="PORT"))) == []
    assert rules(run(opened, reply(501, "no", "PASV", upstream="PORT")))[0] == "active.port_refused"


def test_auto_mode_fallback_is_followed() -> None:
    """In auto mode the proxy retries a refused PASV as PORT: the second reply answers PORT."""
    opened = ("session.open", {"client": "c", "upstream": "u", "upstream_mode": "auto"})
    fallback = ("data.fallback", {"pipe": 1, "to": "active", "code": 502})
    out = run(
        opened,
        reply(502, "no PASV", "PASV", upstream="PASV"),
        fallback,
        reply(200, "PORT ok", "PASV", upstream="PORT"),
        reply(227, "(1,2,3,4,5,6)", "PASV", upstream="PASV"),
    )
    assert [d["rule"] for d in diagnoses(out) if d["rule"] != "reply.explained"] == []


def test_security_refusals() -> None:
    """The proxy's own bounce and port-theft refusals."""
    out = run(
        (
            "security.bounce_refused",
            {"verb": "PORT", "requested": "10.0.0.1:25", "client": "127.0.0.1"},
        ),
        (
            "security.data_theft_refused",
            {"pipe": 1, "side": "client", "peer": "10.0.0.2:1", "expected": "127.0.0.1"},
        ),
    )
    assert rules(out) == ["security.bounce", "security.data_theft"]
    assert "pipe" not in diagnoses(out)[1]["evidence"]


# ---- transfers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("aborted_by", "client_end", "server_end", "known_size", "cause"),
    [
        (None, "closed", "reset", True, "server_reset"),
        (None, "reset", "eof", True, "client_reset"),
        (None, "eof", "eof", True, "premature_eof"),
        (None, "eof", "eof", False, "server_closed"),
        (None, "never", "closed", False, "client_never_connected"),
        (None, "closed", "closed", True, "server_reply"),
    ],
)
def test_426_classification(
    aborted_by: str | None, client_end: str, server_end: str, known_size: bool, cause: str
) -> None:
    """426 is classified from who aborted and how each end of the data connection finished."""
    facts = [
        *(size("big.bin", 1000) if known_size else []),
        start(),
        reply(150, "", "RETR"),
        reply(426, "aborted", "RETR", state=("logged_in", "transfer")),
        end(426, 400, client_end=client_end, server_end=server_end, aborted_by=aborted_by),
    ]
    out = run(*facts)
    found = diagnoses(out, "transfer.aborted")
    assert len(found) == 1 and found[0]["evidence"]["cause"] == cause
    assert not diagnoses(out, "reply.explained")  # the 426 is explained once
    if known_size:
        assert found[0]["evidence"]["percent"] == 40.0 and "(40.0 %)" in found[0]["title"]
    else:
        assert found[0]["evidence"]["percent"] is None and "%" not in found[0]["title"]


def test_426_resume_offset_counts_rest() -> None:
    """REST 600 on a 1000-byte file, then 300 bytes: 75 % of the 400 asked, resume at 900."""
    out = run(size("big.bin", 1000), start(rest=600), end(426, 300, rest=600))
    ev = diagnoses(out, "transfer.aborted")[0]["evidence"]
    assert (ev["expected"], ev["percent"], ev["resume_at"]) == (400, 75.0, 900)


def test_truncated_from_size_or_150() -> None:
    """226 with fewer bytes than SIZE, or than the 150 reply announced, is truncated."""
    assert rules(run(size("big.bin", 1000), start(), end(226, 900))) == ["transfer.truncated"]
    out = run(
        start(),
        reply(150, "Opening BINARY mode data connection for big.bin (1000 bytes).", "RETR", pipe=1),
        end(226, 900),
    )
    assert rules(out) == ["transfer.truncated"]
    assert rules(run(size("big.bin", 1000), start(), end(226, 1000))) == []


def test_no_false_truncation() -> None:
    """TYPE A rewrites line ends and ABOR stops on purpose: neither is a truncation."""
    assert "transfer.truncated" not in rules(
        run(
            size("a.txt", 1000),
            start(path="a.txt", type_="A"),
            end(226, 1040, path="a.txt", type_="A"),
        )
    )
    stopped = run(size("big.bin", 1000), start(), end(226, 10, aborted_by="client"))
    assert rules(stopped) == ["transfer.client_stopped"]
    assert diagnoses(stopped)[0]["severity"] == "info"


def test_client_stopped_download_is_no_failure() -> None:
    """ABOR, or a REST segment whose client closed first, ends a download on purpose: info."""
    abor = run(
        size("big.bin", 1000),
        command("RETR", "big.bin"),
        start(),
        reply(426, "aborted", "RETR", "big.bin", state=("logged_in", "transfer", "abort")),
        end(426, 400, client_end="closed", server_end="closed", aborted_by="client"),
        close(),
    )
    assert rules(abor) == ["transfer.client_stopped"]
    assert diagnoses(abor)[0]["evidence"]["cause"] == "client_abort"
    assert summary(abor)["root_cause"] is None and summary(abor)["cancelled"] == 1
    _, segment_end = end(426, 300, client_end="reset", server_end="reset", rest=600)
    segment_end["first_closed"] = "client"
    segment = run(
        size("big.bin", 1000),
        command("REST", "600"),
        reply(350, "Restarting at 600", "REST", "600"),
        command("RETR", "big.bin"),
        start(rest=600),
        reply(426, "Failure writing network stream.", "RETR", "big.bin"),
        ("transfer.end", segment_end),
        close(),
    )
    assert rules(segment) == ["transfer.client_stopped"]
    assert diagnoses(segment)[0]["evidence"]["cause"] == "client_closed"
    assert summary(segment)["root_cause"] is None


def test_interrupted_unless_already_explained() -> None:
    """A transfer cut by the session's end is interrupted, unless the missing 226, a dropped
    control connection or a stall already tells the story."""
    assert rules(run(start(), end("closed", 500))) == ["transfer.interrupted"]
    no_226 = (
        "transfer.no_completion",
        {"pipe": 1, "command": "RETR", "path": "big.bin", "bytes": 500, "waited_s": 30},
    )
    assert rules(run(start(), no_226, end("closed", 500))) == ["transfer.no_completion"]
    dropped = (
        "control.closed",
        {"side": "server", "clean": True, "detail": "", "awaiting": "RETR", "transfer_open": True},
    )
    assert rules(run(start(), dropped, end("closed", 500))) == ["control.dropped_during_transfer"]
    assert rules(run(start(), progress(500), progress(500), end("closed", 500))) == [
        "transfer.stalled"
    ]


def test_stalled_from_synthetic_progress() -> None:
    """Two equal progress counts make one stall diagnosis per pipe; moving counts make none."""
    assert rules(run(start(), progress(100), progress(200), progress(300))) == []
    out = run(start(), progress(100), progress(100), progress(100), progress(200), progress(200))
    assert rules(out) == ["transfer.stalled"]
    assert diagnoses(out)[0]["evidence"]["bytes"] == 100
    two_pipes = run(
        start(1),
        start(2),
        progress(5, pipe=1),
        progress(5, pipe=2),
        progress(5, pipe=1),
        progress(5, pipe=2),
    )
    assert rules(two_pipes) == ["transfer.stalled", "transfer.stalled"]


@pytest.mark.parametrize("code", [451, 452, 552])
def test_storage_errors_on_upload(code: int) -> None:
    """451/452/552 to STOR is a storage diagnosis with the catalog's words for the code."""
    out = run(reply(code, "no room", "STOR", "up.bin"))
    assert rules(out) == ["transfer.storage"]
    assert diagnoses(out)[0]["explanation"] and diagnoses(out)[0]["remedy"]


def test_ascii_binary() -> None:
    """A binary suffix transferred with TYPE A is a warning; text files are not."""
    assert rules(run(start(path="x.tar.gz", type_="A"))) == ["transfer.ascii_binary"]
    assert rules(run(start(path="x.txt", type_="A"))) == []
    assert rules(run(start(path="x.zip", type_="I"))) == []


@pytest.mark.parametrize(
    ("code", "verb", "text", "rule"),
    [
        (550, "RETR", "Permission denied.", "file.permission"),
        (550, "STOR", "Not enough privileges.", "file.permission"),
        (553, "STOR", "Could not create file: access denied", "file.permission"),
        (550, "RETR", "No such file or directory.", "file.not_found"),
        (550, "RETR", "Failed to open file.", "file.unavailable"),  # vsftpd's words for both
    ],
)
def test_file_errors(code: int, verb: str, text: str, rule: str) -> None:
    """550/553: permission versus not found, else the catalog explains the code."""
    assert rules(run(reply(code, text, verb, "f"))) == [rule]


# ---- protocol, timing, performance -------------------------------------------------------------
def test_unexpected_and_unsolicited() -> None:
    """A reply outside RFC 959 §5.4 warns; an extra reply warns; 421 may come any time."""
    assert rules(run(reply(200, "ok", "CWD"))) == ["protocol.unexpected_reply"]
    assert rules(run(reply(550, "Cannot store.", "STOR"))) == ["reply.explained"]  # de facto
    assert rules(run(reply(200, "Surprise", unsolicited=True, latency_ms=None))) == [
        "protocol.unsolicited"
    ]
    assert rules(run(reply(421, "Timeout.", unsolicited=True, latency_ms=None))) == [
        "control.idle_timeout"
    ]


def test_multiline_mismatch() -> None:
    """A multi-line reply with inner lines that look like other codes."""
    out = run(reply(214, "a\n211 b\nc", "HELP", mismatched=[211]))
    assert rules(out) == ["protocol.multiline_mismatch"] and diagnoses(out)[0]["evidence"][
        "inner"
    ] == [211]


def test_421_during_transfer_versus_idle() -> None:
    """421 while a transfer is open: the server gave up; otherwise an idle timeout."""
    assert rules(run(reply(421, "Data timeout.", "RETR", state=("logged_in", "transfer")))) == [
        "transfer.server_gave_up"
    ]
    assert rules(run(reply(421, "Timeout.", state=("logged_in",), latency_ms=None))) == [
        "control.idle_timeout"
    ]


def test_slow_reply_threshold() -> None:
    """Over SLOW_REPLY_MS by default, or the Diagnoser's own threshold; never the greeting or
    a transfer's final reply (its latency is the transfer's duration)."""
    assert rules(run(reply(230, "ok", "PASS", latency_ms=SLOW_REPLY_MS + 1))) == [
        "login.ok",
        "performance.slow_reply",
    ]
    assert rules(run(reply(230, "ok", "PASS", latency_ms=150.0))) == ["login.ok"]
    fast = Diagnoser(slow_reply_ms=100.0)
    out = run(reply(230, "ok", "PASS", latency_ms=150.0), engine=fast)
    assert rules(out) == ["login.ok", "performance.slow_reply"]
    assert diagnoses(out)[1]["evidence"]["threshold_ms"] == 100.0
    assert rules(run(reply(226, "done", "RETR", latency_ms=60_000.0))) == []
    assert rules(run(greeting(latency_ms=60_000.0))) == ["greeting.ready"]


@pytest.mark.parametrize("kind", ["refused", "timeout", "dns", "unreachable", "error", "weird"])
def test_upstream_failures(kind: str) -> None:
    """Each way of failing to reach the server has its rule (unknown kinds: upstream.error)."""
    out = run(("upstream.failed", {"kind": kind, "detail": "d", "upstream": "ftp.example:21"}))
    assert rules(out) == [f"upstream.{kind if kind != 'weird' else 'error'}"]


def test_catalog_fallback_severity() -> None:
    """The generic explanation takes the catalog's severity: 5xx error, not info."""
    out = run(reply(500, "What?", "XYZZ"))
    assert (
        diagnoses(out)[0]["severity"] == "error" and diagnoses(out)[0]["rule"] == "reply.explained"
    )


# ---- the summary ---------------------------------------------------------------------------------
def test_summary_ranks_most_severe_most_specific_first() -> None:
    """Errors before warnings; specific rules before the catalog fallback; priority; earliest."""
    out = run(
        greeting(),
        reply(200, "ok", "CWD"),  # warning: unexpected reply
        reply(500, "What?", "XYZZ"),  # error, generic
        command("RETR", "big.bin"),
        start(),
        end("closed", 10),  # error: interrupted
        (
            "data.failed",
            {
                "pipe": 2,
                "side": "server",
                "kind": "refused",
                "detail": "",
                "client_mode": "passive",
                "server_mode": "passive",
            },
        ),  # error, priority 1
        close(),
    )
    s = summary(out)
    assert [d["rule"] for d in s["diagnoses"]] == [
        "pasv.unreachable",
        "transfer.interrupted",
        "reply.explained",
        "protocol.unexpected_reply",
    ]
    assert s["root_cause"]["rule"] == "pasv.unreachable" and s["root_cause"]["explanation"]
    assert all(d["severity"] != "info" for d in s["diagnoses"])


def test_summary_counts() -> None:
    """The summary reports transfers, bytes, outcomes and the close reason."""
    out = run(start(), end(226, 1_000_000), close("client closed"))
    s = summary(out)
    assert (s["transfers"], s["transfer_bytes"], s["outcomes"], s["reason"]) == (
        1,
        1_000_000,
        [226],
        "client closed",
    )
    assert s["transfer_rate_mbps"] == 80.0


def test_engine_ignores_its_own_output() -> None:
    """Re-fed diagnoses and summaries (an analyzed log) are not diagnosed again."""
    engine = Diagnoser()
    assert engine.process("diagnosis", {"rule": "x"}) == []
    assert engine.process("session.summary", {}) == []


# ---- TLS (RFC 4217) --------------------------------------------------------------------------
def _tls_failed(side: str, reason: str, channel: str = "control") -> Fact:
    return "tls.failed", {
        "side": side,
        "channel": channel,
        "pipe": None,
        "reason": reason,
        "detail": "ssl error",
        "prot_p": False,
    }


@pytest.mark.parametrize(
    ("side", "reason", "rule"),
    [
        ("server", "unknown certificate authority (issuer not trusted)", "tls.verify_failed"),
        ("server", "wrong IP address", "tls.verify_failed"),
        ("server", "certificate expired", "tls.verify_failed"),
        ("client", "the peer does not trust the certificate", "tls.client_distrusts_proxy"),
        ("server", "TLS version mismatch", "tls.version_mismatch"),
        ("client", "the peer does not speak TLS", "tls.not_tls"),
        ("client", "handshake failed", "tls.handshake_failed"),
    ],
)
def test_tls_handshake_failures(side: str, reason: str, rule: str) -> None:
    """A failed handshake is named by side and reason, with something to do about it."""
    out = run(_tls_failed(side, reason))
    assert rules(out) == [rule]
    assert diagnoses(out)[0]["remedy"] and reason in str(diagnoses(out)[0]["evidence"]["reason"])


def test_tls_upstream_refused() -> None:
    """The server refusing the proxy's own AUTH TLS."""
    out = run(("tls.upstream_refused", {"command": "AUTH TLS", "code": 500, "text": "What?"}))
    assert rules(out) == ["tls.upstream_refused"] and "AUTH TLS" in diagnoses(out)[0]["title"]


@pytest.mark.parametrize(
    ("verb", "channel"), [("USER", "control"), ("PASV", "data"), ("RETR", "data")]
)
def test_tls_required_names_the_channel(verb: str, channel: str) -> None:
    """'SSL/TLS required' on USER asks for AUTH TLS; on PASV or RETR for PROT P."""
    out = run(
        reply(522 if channel == "data" else 530, "SSL/TLS required on the data channel.", verb)
    )
    found = diagnoses(out, "tls.required")
    assert len(found) == 1 and found[0]["evidence"]["channel"] == channel
    assert ("PROT P" in found[0]["explanation"]) == (channel == "data")
