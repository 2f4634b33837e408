"""The capture reader on synthetic packets built in the test: formats and link layers,
TCP reassembly (out of order, retransmitted, lost, cut by the snap length), FTP found by
content, data connections linked and measured, and the diagnoses that follow."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.analyze import analyze_records
from ftpdiag.capture import CaptureError, capture_sessions, looks_like_capture, sessions_from_buffer
from ftpdiag.capture.decode import tcp_segment
from ftpdiag.capture.link import Tracker
from ftpdiag.capture.pcap import packets
from ftpdiag.cli import main
from tests.capture_builder import Capture, Conversation, pcapng

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"


def login(ctl: Conversation) -> None:
    ctl.open()
    ctl.s(b"220 Ready\r\n")
    ctl.c(b"USER diag\r\n")
    ctl.s(b"331 Password\r\n")
    ctl.c(b"PASS secret\r\n")
    ctl.s(b"230 Logged in\r\n")
    ctl.c(b"TYPE I\r\n")
    ctl.s(b"200 Binary\r\n")


def passive_download(cap: Capture, body: int = 3000, server: str = SERVER,
                     client: str = CLIENT, epsv: bool = False, **lost: Any) -> None:  # fmt: skip
    """A whole session: login, PASV (or EPSV), RETR of ``body`` bytes, QUIT."""
    ctl = cap.conversation((client, 40000), (server, 21))
    login(ctl)
    if epsv:
        ctl.c(b"EPSV\r\n")
        ctl.s(b"229 Entering Extended Passive Mode (|||50000|)\r\n")
    else:
        ctl.c(b"PASV\r\n")
        ctl.s(b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")
    data = cap.conversation((client, 40001), (server, 50000)).open()
    ctl.c(b"RETR file.bin\r\n")
    ctl.s(b"150 Opening (%d bytes)\r\n" % body)
    for i in range(0, body, 1000):
        data.s(bytes(min(1000, body - i)), send=i not in lost.get("drop", ()))
    data.close()
    ctl.s(b"226 Done\r\n")
    ctl.c(b"QUIT\r\n")
    ctl.s(b"221 Bye\r\n")
    ctl.close()


def rebuild(blob: bytes) -> list[dict[str, Any]]:
    (session,) = sessions_from_buffer(blob)
    return session


def only(records: list[dict[str, Any]], event: str) -> dict[str, Any]:
    (found,) = [r for r in records if r["event"] == event]
    return found


def root_cause(records: list[dict[str, Any]]) -> str | None:
    (summary,) = [r for r in analyze_records(records) if r["event"] == "session.summary"]
    return summary["root_cause"]["rule"] if summary["root_cause"] else None


def commands(records: list[dict[str, Any]]) -> list[tuple[str, str | None, int]]:
    return [(r["command"], r["arg"], r["code"]) for r in records if r["event"] == "reply"]


# ---- formats and link layers -------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "link", "vlans"),
    [
        ({}, "ethernet", ()),
        ({"big_endian": True}, "ethernet", ()),
        ({"nanoseconds": True}, "ethernet", ()),
        ({}, "ethernet", (10, 20)),  # QinQ: two VLAN tags
        ({}, "sll", ()),
        ({}, "sll2", ()),
        ({}, "raw", ()),
        ({}, "null", ()),
    ],
)
def test_formats_and_link_layers_give_the_same_session(
    options: dict[str, Any], link: str, vlans: tuple[int, ...]
) -> None:
    """pcap in either byte order and time unit, over Ethernet (VLAN tagged or not), Linux
    cooked v1/v2, raw IP and BSD loopback: the same commands, replies and transfer."""
    cap = Capture(link=link, vlans=vlans)
    passive_download(cap)
    records = rebuild(cap.pcap(**options))
    assert commands(records)[:3] == [
        (None, None, 220),
        ("USER", "diag", 331),
        ("PASS", "****", 230),
    ]
    end = only(records, "transfer.end")
    assert (end["bytes"], end["missed_bytes"], end["outcome"]) == (3000, 0, 226)
    assert (end["client_end"], end["server_end"]) == ("eof", "eof")
    assert end["data_from"] == f"{CLIENT}:40001" and end["data_to"] == f"{SERVER}:50000"
    assert records[0]["timestamp"].startswith("2023-11-14T22:13:20.0")
    assert root_cause(records) is None


def test_pcapng_is_read_like_pcap() -> None:
    """A pcapng file (section, interface with nanosecond resolution, enhanced packet blocks)
    gives exactly the records of the same packets written as pcap."""
    cap = Capture()
    passive_download(cap)

    def untimed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "timestamp"} for r in records]

    assert untimed(rebuild(pcapng(cap.frames))) == untimed(rebuild(cap.pcap()))


def test_ipv6_with_epsv() -> None:
    """IPv6 control and data connections, the data port from a 229 reply."""
    cap = Capture()
    passive_download(cap, client=CLIENT6, server=SERVER6, epsv=True)
    records = rebuild(cap.pcap())
    assert only(records, "data.passive")["advertised"] == f"[{SERVER6}]:50000"
    assert only(records, "transfer.end")["bytes"] == 3000


def test_format_is_told_by_magic_bytes() -> None:
    """pcap (both byte orders, µs and ns) and pcapng are recognised by their first bytes;
    a JSON-lines log or an empty file is not a capture."""
    cap = Capture()
    for blob in (cap.pcap(), cap.pcap(big_endian=True), cap.pcap(nanoseconds=True), pcapng([])):
        assert looks_like_capture(blob[:16])
    assert not looks_like_capture(b'{"event": "session.open"}')
    assert not looks_like_capture(b"")
    with pytest.raises(CaptureError):
        sessions_from_buffer(b"not a capture at all")


# ---- TCP reassembly ------------------------------------------------------------------
def test_out_of_order_and_retransmitted_control_segments() -> None:
    """Commands whose segments arrive out of order, and again as retransmissions, are read
    once each and in order."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    ctl.open()
    ctl.s(b"220 Ready\r\n")
    first = ctl.c(b"USER di", send=False)
    ctl.c(b"ag\r\n")  # arrives before the segment it follows
    cap.add(first)
    cap.add(first)  # retransmitted
    ctl.s(b"331 Password\r\n")
    ctl.c(b"NOOP\r\n")
    ctl.s(b"200 OK\r\n")
    records = rebuild(cap.pcap())
    assert commands(records) == [(None, None, 220), ("USER", "diag", 331), ("NOOP", "", 200)]
    assert not [r for r in records if r["event"] == "capture.gap"]


def test_lost_control_segment_is_a_gap_and_parsing_resumes() -> None:
    """A command lost from the capture (the server's ACK shows it was sent) is reported as a
    gap of its size; the commands after it are read normally."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    ctl.c(b"CWD /lost\r\n", send=False)
    ctl.s(b"250 OK\r\n")  # acknowledges the lost bytes
    ctl.c(b"PWD\r\n")
    ctl.s(b'257 "/"\r\n')
    records = rebuild(cap.pcap())
    gap = only(records, "capture.gap")
    assert (gap["side"], gap["bytes"]) == ("client", len(b"CWD /lost\r\n"))
    assert ("PWD", "", 257) in commands(records)


def test_snap_length_keeps_sizes_and_reports_missing_bytes() -> None:
    """With a 100-byte snap length the payloads are mostly absent, yet the transfer's size
    comes from the sequence numbers and the absent bytes are counted apart; the control
    lines, short enough, are all there."""
    cap = Capture()
    passive_download(cap, body=5000)
    records = rebuild(cap.pcap(snaplen=100))
    end = only(records, "transfer.end")
    assert end["bytes"] == 5000
    assert end["missed_bytes"] == 5 * (1000 - (100 - 14 - 20 - 20))
    assert root_cause(records) is None


def test_dropped_data_packets_do_not_shrink_the_transfer() -> None:
    """Data packets lost from the capture (not from the transfer): the size is still the
    whole span, the loss is ``missed_bytes``, and no truncation is diagnosed."""
    cap = Capture()
    passive_download(cap, body=5000, drop=(1000, 2000))
    records = rebuild(cap.pcap())
    end = only(records, "transfer.end")
    assert (end["bytes"], end["missed_bytes"]) == (5000, 2000)
    assert root_cause(records) is None


def test_sequence_numbers_wrap() -> None:
    """The server's sequence numbers start 4 KiB below 2**32: a 10 kB download crosses the
    wrap and is still 10 kB."""
    cap = Capture()
    passive_download(cap, body=10000)
    assert only(rebuild(cap.pcap()), "transfer.end")["bytes"] == 10000


# ---- FTP by content, data connections ---------------------------------------------------
def test_ftp_is_found_by_content_not_port_and_other_traffic_is_ignored() -> None:
    """An FTP server on port 2121 is found because it speaks first with a reply code; an
    HTTP connection beside it on port 21 is not FTP, nor is an SMTP server's 220."""
    cap = Capture()
    http = cap.conversation((CLIENT, 39999), (SERVER, 21)).open()
    http.c(b"GET / HTTP/1.1\r\n\r\n")
    http.s(b"HTTP/1.1 200 OK\r\n\r\n")
    smtp = cap.conversation((CLIENT, 39998), (SERVER, 25)).open()
    smtp.s(b"220 mail.example.org ESMTP Postfix\r\n")
    smtp.c(b"EHLO client\r\n")
    smtp.s(b"250 mail.example.org\r\n")
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 2121))
    login(ctl)
    (session,) = sessions_from_buffer(cap.pcap())
    assert session[0]["upstream"] == f"{SERVER}:2121"


def test_active_mode_and_a_reused_port() -> None:
    """Two active downloads to the same client port from the server's port 20: each data
    connection is linked to its own PORT, in time order, with its own size."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    for size in (700, 1300):
        ctl.c(b"PORT 10,0,0,1,156,68\r\n")  # port 40004
        ctl.s(b"200 PORT ok\r\n")
        ctl.c(b"RETR f\r\n")
        data = cap.conversation((SERVER, 20), (CLIENT, 40004)).open()
        ctl.s(b"150 Opening\r\n")
        data.c(bytes(size))  # active: the server (the connection's originator) sends
        data.close(first_client=True)
        ctl.s(b"226 Done\r\n")
    records = rebuild(cap.pcap())
    ends = [r for r in records if r["event"] == "transfer.end"]
    assert [(e["bytes"], e["mode"]["client"], e["data_from"]) for e in ends] == [
        (700, "active", f"{SERVER}:20"),
        (1300, "active", f"{SERVER}:20"),
    ]


def test_426_mid_transfer_is_diagnosed_with_the_bytes_that_passed() -> None:
    """The server resets the data connection after 2000 bytes and answers 426: the root
    cause is the aborted transfer, with its bytes and the server's reset."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    ctl.c(b"SIZE big\r\n")
    ctl.s(b"213 100000\r\n")
    ctl.c(b"PASV\r\n")
    ctl.s(b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")
    data = cap.conversation((CLIENT, 40001), (SERVER, 50000)).open()
    ctl.c(b"RETR big\r\n")
    ctl.s(b"150 Opening\r\n")
    data.s(bytes(1000))
    data.s(bytes(1000))
    data.close(reset=True)
    ctl.s(b"426 Connection closed; transfer aborted.\r\n")
    records = rebuild(cap.pcap())
    end = only(records, "transfer.end")
    assert (end["bytes"], end["server_end"], end["outcome"]) == (2000, "reset", 426)
    (diagnosis,) = [r for r in analyze_records(records) if r.get("rule") == "transfer.aborted"]
    assert diagnosis["evidence"]["cause"] == "server_reset"
    assert diagnosis["evidence"]["expected"] == 100000
    assert root_cause(records) == "transfer.aborted"


def test_refused_passive_port_is_the_root_cause_of_a_425() -> None:
    """The client's SYN to the advertised port is answered by RST and the server replies
    425: the data connection failed on the server's side, refused."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    ctl.c(b"PASV\r\n")
    ctl.s(b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")
    cap.conversation((CLIENT, 40001), (SERVER, 50000)).refused()
    ctl.c(b"RETR f\r\n")
    ctl.s(b"425 Can't open data connection.\r\n")
    records = rebuild(cap.pcap())
    failed = only(records, "data.failed")
    assert (failed["side"], failed["kind"]) == ("server", "refused")
    assert root_cause(records) == "pasv.unreachable"


def test_nat_address_in_pasv() -> None:
    """A 227 advertising a private address while the control connection goes to a public
    one is the NAT warning, and the data connection the client made to the public address is
    still linked."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), ("203.0.113.7", 21))
    login(ctl)
    ctl.c(b"PASV\r\n")
    ctl.s(b"227 Entering Passive Mode (192,168,1,5,195,80).\r\n")
    data = cap.conversation((CLIENT, 40001), ("203.0.113.7", 50000)).open()
    ctl.c(b"LIST\r\n")
    ctl.s(b"150 Here\r\n")
    data.s(b"x" * 10)
    data.close()
    ctl.s(b"226 Done\r\n")
    records = rebuild(cap.pcap())
    assert only(records, "transfer.end")["bytes"] == 10
    # The listing worked (the client dialled the public address): a warning, no root cause.
    assert root_cause(records) is None
    (summary,) = [r for r in analyze_records(records) if r["event"] == "session.summary"]
    assert summary["diagnoses"][0]["rule"] == "pasv.nat_mismatch"


def test_auth_tls_makes_the_session_blind_and_implicit_ftps_is_named() -> None:
    """After AUTH TLS → 234 nothing more is parsed (the bytes are counted); a TLS client
    hello on port 990 is a session named implicit FTPS."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    ctl.open()
    ctl.s(b"220 Ready\r\n")
    ctl.c(b"AUTH TLS\r\n")
    ctl.s(b"234 Proceed\r\n")
    ctl.c(b"\x16\x03\x01\x00\x05hello")
    implicit = cap.conversation((CLIENT, 40002), (SERVER, 990)).open()
    implicit.c(b"\x16\x03\x01\x00\x05hello")
    explicit, implicit_records = sessions_from_buffer(cap.pcap())
    assert only(explicit, "tls.blind")["reason"].startswith("AUTH TLS accepted")
    assert only(explicit, "tls.blind_traffic")["to_server"] == 10
    assert implicit_records[0]["tls"] == "implicit"
    assert "implicit FTPS" in only(implicit_records, "tls.blind")["reason"]


def test_capture_ending_mid_transfer_claims_no_failure() -> None:
    """A capture that stops while a download is still running ends its transfer as
    ``capture_ended``: no truncation or interruption is diagnosed."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    ctl.c(b"PASV\r\n")
    ctl.s(b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")
    data = cap.conversation((CLIENT, 40001), (SERVER, 50000)).open()
    ctl.c(b"RETR f\r\n")
    ctl.s(b"150 Opening (9000 bytes)\r\n")
    data.s(bytes(1000))
    records = rebuild(cap.pcap())
    end = only(records, "transfer.end")
    assert (end["outcome"], end["bytes"], end["server_end"]) == ("capture_ended", 1000, "open")
    assert only(records, "session.close")["reason"] == "capture ended"
    assert root_cause(records) is None


def test_truncated_file_still_gives_what_it_holds(tmp_path: Path) -> None:
    """A capture cut in the middle of a record (a tcpdump killed while writing) is read up
    to that record."""
    cap = Capture()
    passive_download(cap)
    blob = cap.pcap()
    path = tmp_path / "cut.pcap"
    path.write_bytes(blob[: len(blob) - 30])
    (session,) = capture_sessions(str(path))
    assert ("USER", "diag", 331) in commands(session)


def test_analyze_command_reads_a_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ftpdiag analyze FILE`` detects a capture by its magic bytes whatever its name, and
    a damaged capture is one error line with exit status 2."""
    cap = Capture()
    passive_download(cap, body=5000)
    path = tmp_path / "trace.log"  # the name says nothing
    path.write_bytes(cap.pcap())
    assert main(["analyze", "--format", "json", str(path)]) == 0
    assert '"session.summary"' in capsys.readouterr().out
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(cap.pcap()[:4] + b"\x00" * 4)
    assert main(["analyze", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("ftpdiag: error:")


def test_finished_connections_are_forgotten() -> None:
    """Thousands of short unrelated connections do not stay in memory: the tracker keeps the
    connections still open and the FTP control connections, not every one it saw."""
    cap = Capture()
    login(cap.conversation((CLIENT, 40000), (SERVER, 21)))
    for port in range(2000):
        other = cap.conversation((CLIENT, 10000 + port), ("10.0.0.9", 80)).open()
        other.c(b"GET / HTTP/1.0\r\n\r\n")
        other.s(b"HTTP/1.0 200 OK\r\n\r\n")
        other.close()
    tracker = Tracker("many.pcap")
    blob = cap.pcap()
    for ts, linktype, data, off, caplen in packets(blob):
        seg = tcp_segment(linktype, data, off, caplen)
        assert seg is not None
        tracker.segment(ts, seg, data)
    tracker._sweep(tracker.last)
    assert len(tracker.table) == 2  # the control connection, both directions
    assert len(tracker.finish()) == 1


def test_damaged_captures_never_raise_anything_but_capture_error() -> None:
    """Random byte damage to pcap and pcapng files (lengths, link types, timestamps, TCP
    headers, FTP text) yields sessions or a CaptureError, never another exception."""
    rng = random.Random(15)
    cap = Capture()
    passive_download(cap, body=5000)
    blobs = [cap.pcap(), pcapng(cap.frames), cap.pcap(big_endian=True)]
    for _ in range(300):
        data = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            sessions = sessions_from_buffer(bytes(data))
        except CaptureError:
            continue
        analyze_records([r for s in sessions for r in s])


def test_many_tiny_out_of_order_segments_stay_cheap() -> None:
    """20,000 one-byte control segments sent in reverse order (a hostile or broken capture)
    are handled in bounded time: held segments are capped, the holes become gaps."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    ctl.open()
    ctl.s(b"220 Ready\r\n")
    packets_ = [ctl.c(b"x", send=False) for _ in range(20000)]
    for packet in reversed(packets_):
        cap.add(packet)
    started = time.perf_counter()
    (session,) = sessions_from_buffer(cap.pcap())
    assert time.perf_counter() - started < 10
    assert any(r["event"] == "capture.gap" for r in session)


def test_a_gap_inside_pass_never_shows_the_password() -> None:
    """The segment holding ``PASS sec`` is lost and ``ret`` arrives: the tail of the cut
    line is dropped, not read as a command, and no part of the password is in any record;
    an over-long PASS line is logged without its argument."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    ctl.open()
    ctl.s(b"220 Ready\r\n")
    ctl.c(b"USER diag\r\n")
    ctl.s(b"331 Password\r\n")
    ctl.c(b"PASS topsec", send=False)
    ctl.c(b"retvalue\r\n")
    ctl.s(b"230 Logged in\r\n")
    ctl.c(b"PASS " + b"hunter2" * 2000 + b"\r\n")
    ctl.s(b"500 Too long\r\n")
    records = rebuild(cap.pcap())
    text = repr(records)
    assert "topsec" not in text and "retvalue" not in text.lower() and "hunter2" not in text
    assert only(records, "capture.gap")["bytes"] == len(b"PASS topsec")
    assert only(records, "protocol.line_too_long")["head"] == "PASS ****"


def test_capture_joining_mid_session_blames_nothing_on_the_missing_start() -> None:
    """A capture that begins with a reply (its command was sent before the capture) and no
    handshake: the session is taken as logged in and the first reply is not unsolicited."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))  # no open(): no SYN in the capture
    ctl.s(b"250 CWD command successful\r\n")
    ctl.c(b"PWD\r\n")
    ctl.s(b'257 "/pub"\r\n')
    records = rebuild(cap.pcap())
    first = next(r for r in records if r["event"] == "reply")
    assert (first["unsolicited"], first["state"][:1]) == (False, ["logged_in"])
    assert root_cause(records) is None


@pytest.mark.parametrize(
    ("mode", "attempt", "side", "kind", "rule"),
    [
        ("passive", "none", "client", "timeout", "data.client_never_connected"),
        ("passive", "unanswered", "server", "timeout", "pasv.unreachable"),
        ("active", "none", "server", "timeout", "active.server_never_connected"),
        ("active", "refused", "client", "refused", "active.client_unreachable"),
    ],
)
def test_425_says_which_side_failed(
    mode: str, attempt: str, side: str, kind: str, rule: str
) -> None:
    """A 425 with no data connection in the capture: nobody tried (the side that should
    have connected failed), or the attempt was refused or never answered (the side that
    should have accepted failed); each gives the proxy's data.failed and its root cause."""
    cap = Capture()
    ctl = cap.conversation((CLIENT, 40000), (SERVER, 21))
    login(ctl)
    if mode == "passive":
        ctl.c(b"PASV\r\n")
        ctl.s(b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")
        dialler, listener = (CLIENT, 40001), (SERVER, 50000)
    else:
        ctl.c(b"PORT 10,0,0,1,156,68\r\n")
        ctl.s(b"200 PORT ok\r\n")
        dialler, listener = (SERVER, 20), (CLIENT, 40004)
    ctl.c(b"RETR f\r\n")
    data = cap.conversation(dialler, listener)
    if attempt == "refused":
        data.refused()
    elif attempt == "unanswered":
        for _ in range(3):
            data.syn()
    ctl.s(b"425 Can't open data connection.\r\n")
    records = rebuild(cap.pcap())
    failed = only(records, "data.failed")
    assert (failed["side"], failed["kind"], failed["client_mode"]) == (side, kind, mode)
    assert root_cause(records) == rule
