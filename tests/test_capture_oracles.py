"""Sessions rebuilt from the public captures in ``../shared/pcaps`` against the upstream
suites' own expectations: Zeek's ftp.log/conn.log/files.log, Suricata's EVE checks, nDPI's
flow dump. The captures and oracles are read in place; nothing of them is in the repository.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.analyze import analyze_records
from ftpdiag.capture import capture_sessions
from ftpdiag.core.addresses import AddressError, parse_eprt_arg, parse_port_arg, show

ROOT = Path(__file__).resolve().parents[1]
# ``../shared`` beside the checkout; a git worktree one level further down finds it too.
PCAPS = next(
    (p / "shared" / "pcaps" for p in ROOT.parents[:2] if (p / "shared" / "pcaps").is_dir()),
    ROOT.parent / "shared" / "pcaps",
)
if not PCAPS.is_dir():
    pytest.skip(
        f"the shared captures are not here ({PCAPS} is absent): oracle tests skipped",
        allow_module_level=True,
    )

ALL = sorted(p.stem for p in PCAPS.glob("*.pcap"))


def oracle(name: str) -> str:
    return (PCAPS / f"{name}.expected.txt").read_text("utf-8", errors="replace")


def zeek_tables(name: str, log: str) -> list[list[dict[str, str]]]:
    """The rows of each Zeek baseline named ``log`` (e.g. ``ftp.log``) in the oracle; an
    oracle may hold several (one per upstream test that runs the capture)."""
    tables: list[list[dict[str, str]]] = []
    fields: list[str] | None = None
    current = ""
    for line in oracle(name).splitlines():
        if line.startswith("### "):
            fields = None
            current = line.rsplit("/", 1)[-1].strip()
        elif line.startswith("#fields") and current == log:
            fields = line.split("\t")[1:]
            tables.append([])
        elif fields and line and not line.startswith("#"):
            tables[-1].append(dict(zip(fields, line.split("\t"), strict=False)))
    return tables


def zeek_logs(name: str, log: str) -> list[dict[str, str]]:
    """The rows of the first Zeek baseline named ``log`` in the oracle."""
    tables = zeek_tables(name, log)
    return tables[0] if tables else []


def records(name: str) -> list[list[dict[str, Any]]]:
    return capture_sessions(str(PCAPS / f"{name}.pcap"))


def events(sessions: list[list[dict[str, Any]]], event: str) -> Iterator[dict[str, Any]]:
    for session in sessions:
        yield from (r for r in session if r["event"] == event)


def only_event(session: list[dict[str, Any]], event: str) -> dict[str, Any]:
    (found,) = [r for r in session if r["event"] == event]
    return found


def final_replies(sessions: list[list[dict[str, Any]]]) -> list[tuple[str, int]]:
    """(command, final reply code) in order; the greeting is Zeek's ``<init>``."""
    pairs = []
    for r in events(sessions, "reply"):
        if r["code"] >= 200 and (r["command"] or "greeting" in r["state"]):
            pairs.append((r["command"] or "<init>", r["code"]))
    return pairs


def is_subsequence(needle: list[Any], haystack: list[Any]) -> bool:
    """Each item of ``needle`` in order in ``haystack``; a code of None matches any code."""
    it = iter(haystack)
    return all(any(h[0] == n[0] and n[1] in (None, h[1]) for h in it) for n in needle)


# Where Zeek's ftp.log pairs a command with another reply than the one that answered it.
ZEEK_PAIRS_DIFFER = {
    # "99 PASV invalid" is no reply (RFC 959 §4.2: three digits); Zeek logs PASV with the
    # previous reply, ftpdiag with the next real one (the QUIT's 221), as the proxy would.
    "zeek-ftp-invalid-reply-code": {("PASV", 230)},
    # The server answered RETR with 550; Zeek logs the RETR when the 221 ends the session.
    "zeek-ipv6-multiline-reply": {("RETR", 221)},
}


ZEEK_FTP = [n for n in ALL if zeek_logs(n, "ftp.log")]
ZEEK_DATA = [n for n in ALL if any(r["service"] == "ftp-data" for r in zeek_logs(n, "conn.log"))]


def test_there_are_captures_to_check() -> None:
    """The shared folder holds the 26 captures the README lists, each with its oracle."""
    assert len(ALL) == 26
    assert all((PCAPS / f"{n}.expected.txt").is_file() for n in ALL)
    assert len(ZEEK_FTP) >= 10 and len(ZEEK_DATA) >= 3


@pytest.mark.parametrize("name", ALL)
def test_every_capture_gives_sessions_and_a_verdict(name: str) -> None:
    """Every capture yields at least one FTP session, found by content, and the engine runs
    over its records without error, ending each session with a summary."""
    sessions = records(name)
    assert sessions, f"{name}: no FTP session found"
    flat = [r for s in sessions for r in s]
    summaries = [r for r in analyze_records(flat) if r["event"] == "session.summary"]
    assert len(summaries) == len(sessions)


@pytest.mark.parametrize("name", ZEEK_FTP)
def test_commands_and_reply_codes_match_zeek_ftp_log(name: str) -> None:
    """Each command Zeek's ftp.log records, with the reply code that answered it, appears in
    the rebuilt sessions in the same order."""
    sessions = records(name)
    ours = final_replies(sessions)
    gaps = len(list(events(sessions, "capture.gap")))
    for table in zeek_tables(name, "ftp.log"):
        expected = []
        for row in table:
            if row["reply_code"] not in ("-", "") and row["command"] != "<missing>":
                pair = (row["command"], int(row["reply_code"]))
                differs = pair in ZEEK_PAIRS_DIFFER.get(name, set())
                expected.append((pair[0], None) if differs else pair)
        assert expected
        if not gaps:
            assert is_subsequence(expected, ours)
            continue
        # Around a hole in the capture (a lost command or reply) Zeek and ftpdiag may pair
        # a line or two differently; everywhere else the pairs are the same.
        logged = {verb for verb, _ in expected}
        matcher = SequenceMatcher(None, expected, [p for p in ours if p[0] in logged], False)
        matched = sum(block.size for block in matcher.get_matching_blocks())
        assert len(expected) - matched <= 2 * gaps


@pytest.mark.parametrize("name", ZEEK_FTP)
def test_data_channels_match_zeek_ftp_log(name: str) -> None:
    """The data channel Zeek derives from each 227/229 reply and PORT/EPRT command is the
    address the rebuilt session expects its data connection at."""
    sessions = records(name)
    advertised = [r["advertised"] for r in events(sessions, "data.passive")]
    ports = []
    for r in events(sessions, "command"):
        with contextlib.suppress(AddressError):  # zeek-fake-server-delays-all: "PORT 114,115"
            if r["verb"] == "PORT":
                ports.append(show(parse_port_arg(r["arg"])))
            elif r["verb"] == "EPRT":
                ports.append(show(parse_eprt_arg(r["arg"])))
    checked = 0
    for row in zeek_logs(name, "ftp.log"):
        if row.get("data_channel.resp_p", "-") == "-":
            continue
        port = int(row["data_channel.resp_p"].split("/")[0])
        where = show((row["data_channel.resp_h"], port))
        target = advertised if row["data_channel.passive"] == "T" else ports
        if row["command"] == "EPSV":  # Zeek puts the control peer; so do we
            assert where in advertised
        else:
            assert where in target, f"{name}: {row['command']} data channel {where}"
        checked += 1
    if name in ("zeek-ipv4", "zeek-ipv6", "zeek-cwd-navigation"):
        assert checked >= 4


@pytest.mark.parametrize("name", ZEEK_DATA)
def test_data_connections_match_zeek_conn_log(name: str) -> None:
    """Every ftp-data connection of Zeek's conn.log is a rebuilt transfer with the same
    endpoints, the same size from the sequence span and the same bytes missing."""
    ends = {(r["data_from"], r["data_to"]): r for r in events(records(name), "transfer.end")}
    for row in zeek_logs(name, "conn.log"):
        if row["service"] != "ftp-data":
            continue
        key = (
            show((row["id.orig_h"], int(row["id.orig_p"]))),
            show((row["id.resp_h"], int(row["id.resp_p"]))),
        )
        assert key in ends, f"{name}: data connection {key} not linked to a transfer"
        end = ends[key]
        assert end["bytes"] == int(row["orig_bytes"]) + int(row["resp_bytes"])
        assert end["missed_bytes"] == int(row["missed_bytes"])
        assert abs(end["duration_ms"] / 1000 - float(row["duration"])) < 0.1


def test_big_transfer_counts_wrapped_sequence_numbers() -> None:
    """A 5.4 GB download whose payload was cut from the capture: the size comes from the
    sequence span across 32-bit wrap-arounds, the loss is reported apart, and since the
    server said 226 and the connection ended cleanly nothing is diagnosed as truncated."""
    sessions = records("zeek-bigtransfer")
    retr = [r for r in events(sessions, "transfer.end") if r["command"] == "RETR"]
    assert [r["bytes"] for r in retr] == [5416666670]
    files = zeek_logs("zeek-bigtransfer", "files.log")
    assert retr[0]["missed_bytes"] == max(int(f["missing_bytes"]) for f in files)
    out = analyze_records([r for s in sessions for r in s])
    assert [r["root_cause"] for r in out if r["event"] == "session.summary"] == [None]


def suricata_checks(name: str) -> list[dict[str, str]]:
    """The ``match:`` blocks of suricata-verify's test.yaml checks, flattened to strings."""
    checks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in oracle(name).splitlines():
        stripped = line.strip()
        if stripped.startswith("- filter:"):
            current = {}
            checks.append(current)
        elif current is not None and ":" in stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition(":")
            current[key.strip()] = value.strip().strip("'\"")
        elif stripped.startswith("###"):
            current = None
    return checks


SURICATA = [n for n in ALL if n.startswith("sv-")]


@pytest.mark.parametrize("name", SURICATA)
def test_suricata_ftp_and_file_checks(name: str) -> None:
    """Suricata's per-command FTP records (command, client port, data port) and per-file
    records (name, size, endpoints) are found in the rebuilt sessions."""
    sessions = records(name)
    checked = 0
    for check in suricata_checks(name):
        count = int(check.get("count", "1"))
        if check.get("event_type") == "ftp" and "ftp.command" in check and count > 0:
            verb = check["ftp.command"]
            hits = [
                s
                for s in sessions
                if any(r["event"] == "command" and r["verb"] == verb for r in s)
                and ("src_port" not in check or s[0]["client"].endswith(f":{check['src_port']}"))
            ]
            assert hits, f"{name}: no session with {verb} for {check}"
            if "ftp.dynamic_port" in check:
                port = check["ftp.dynamic_port"]
                wanted = [r for s in hits for r in s if r["event"] in ("command", "data.passive")]
                text = " ".join(str(r.get("arg") or r.get("advertised")) for r in wanted)
                numbers = {
                    int(a) * 256 + int(b) for a, b in re.findall(r"(\d+),(\d+)(?:\s|$)", text)
                }
                numbers |= {int(p) for p in re.findall(r":(\d+)(?:\s|$)", text)}
                assert int(port) in numbers, f"{name}: data port {port} not seen"
            checked += 1
        elif check.get("event_type") == "fileinfo" and "fileinfo.size" in check:
            size, filename = int(check["fileinfo.size"]), check["fileinfo.filename"]
            pair = {
                show((check["src_ip"], int(check["src_port"]))),
                show((check["dest_ip"], int(check["dest_port"]))),
            }
            found = [
                r
                for r in events(sessions, "transfer.end")
                if r["path"].endswith(filename) and {r["data_from"], r["data_to"]} == pair
            ]
            assert found, f"{name}: no transfer of {filename} between {pair}"
            assert all(r["bytes"] == size and r["missed_bytes"] == 0 for r in found)
            checked += 1
    if name in ("sv-ftp-bounce", "sv-bug-4877-active-stor-retr-pdf", "sv-ftp-download-active"):
        assert checked


def ndpi_flows(name: str) -> list[tuple[str, str, str]]:
    """(protocol, client endpoint, server endpoint) of each flow in nDPI's dump."""
    flows = []
    for match in re.finditer(r"TCP (\S+) <-> (\S+) \[proto: [\d.]+/(\w+)\]", oracle(name)):
        flows.append((match.group(3), match.group(1), match.group(2)))
    return flows


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("ndpi-")])
def test_ndpi_control_and_data_flows(name: str) -> None:
    """The flows nDPI names FTP_CONTROL are the rebuilt sessions' control connections, and
    those it names FTP_DATA are linked to a transfer."""
    sessions = records(name)
    flows = ndpi_flows(name)
    def norm(endpoint: str) -> str:
        return endpoint.replace("[", "").replace("]", "")

    control = {(norm(s[0]["client"]), norm(s[0]["upstream"])) for s in sessions}
    assert {(norm(c), norm(s)) for p, c, s in flows if p == "FTP_CONTROL"} <= control
    data = {
        (norm(r["data_from"]), norm(r["data_to"]))
        for r in events(sessions, "transfer.end")
        if r["data_from"] is not None
    }
    for _, c, s in (f for f in flows if f[0] == "FTP_DATA"):
        assert (norm(c), norm(s)) in data or (norm(s), norm(c)) in data


def test_ftp_found_by_content_on_a_port_other_than_21() -> None:
    """GridFTP on port 2811 is recognised as FTP because its server speaks first with a
    reply code, not because of the port; once AUTH GSSAPI's commands travel inside ENC
    (RFC 2228) the session is blind, as after AUTH TLS."""
    (session,) = records("zeek-globus-url-copy-gridftp")
    assert session[0]["upstream"].endswith(":2811")
    assert any(r["event"] == "reply" and r["code"] == 220 for r in session)
    assert ("ADAT", 235) in final_replies([session])
    assert only_event(session, "tls.blind")["reason"].startswith("ENC")
    assert not any(r["event"] == "reply" and r["code"] // 10 == 63 for r in session)


def test_one_ftp_session_among_unrelated_connections() -> None:
    """Of the 79 connections of sv-output-eve-ftp-data only the FTP one becomes a session."""
    assert len(records("sv-output-eve-ftp-data")) == 1


def test_auth_tls_goes_blind_after_234_and_keeps_what_came_before() -> None:
    """After AUTH TLS → 234 the session is marked blind; the commands before it are kept."""
    (session,) = records("zeek-ftp-auth-tls")
    names = [r["event"] for r in session]
    blind = names.index("tls.blind")
    assert ("AUTH", 234) in final_replies([session[:blind]])
    assert "tls.blind_traffic" in names
    assert all(r["event"] != "command" for r in session[blind:])


def test_capture_starting_mid_session_has_no_greeting() -> None:
    """A capture that starts after the login pairs replies with the commands it saw and
    invents no greeting."""
    (session,) = records("zeek-ftp-with-numbers-in-filename")
    replies = list(events([session], "reply"))
    assert replies and not any("greeting" in r["state"] for r in replies)


def test_bounce_is_diagnosed_from_the_capture() -> None:
    """The PORT to a third host in sv-ftp-bounce is the root cause of that session, and the
    ordinary active session beside it has none."""
    sessions = records("sv-ftp-bounce")
    out = analyze_records([r for s in sessions for r in s])
    causes = {r["session"]: r["root_cause"] for r in out if r["event"] == "session.summary"}
    assert sorted((c or {}).get("rule", "") for c in causes.values()) == [
        "",
        "security.bounce_attempt",
    ]


def test_pipelined_commands_before_the_greeting_pair_with_their_replies() -> None:
    """A client that sends eight commands before the greeting: every reply is paired with
    the command it answers, in order, as in Zeek's ftp.log."""
    (session,) = records("zeek-fake-server-delays-all")
    pairs = final_replies([session])
    assert pairs[:4] == [("<init>", 220), ("USER", 230), ("PASS", 230), ("SYST", 215)]
    assert pairs[-1] == ("QUIT", 221)
