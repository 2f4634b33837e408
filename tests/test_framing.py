"""Unit tests of line framing, Telnet stripping and reply assembly (no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ftpdiag.core.framing import LineSplitter, OverlongLine, line_text, strip_telnet
from ftpdiag.core.messages import (
    MalformedReply,
    OversizedReply,
    Reply,
    ReplyAssembler,
    parse_command,
)


def feed_chunks(splitter: LineSplitter, data: bytes, cuts: list[int]) -> list[bytes | OverlongLine]:
    out: list[bytes | OverlongLine] = []
    last = 0
    for cut in [*sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]:
        out += splitter.feed(data[last:cut])
        last = cut
    return out


def test_crlf_and_bare_lf_lines() -> None:
    """Lines end at LF with or without CR, and terminators are kept for byte-exact relay."""
    assert LineSplitter().feed(b"USER a\r\nPASS b\nNOOP") == [b"USER a\r\n", b"PASS b\n"]


def test_partial_line_is_held_until_complete() -> None:
    """A line split across chunks comes out whole once its LF arrives."""
    s = LineSplitter()
    assert s.feed(b"RE") == [] and s.feed(b"TR x") == []
    assert s.feed(b"\r\n") == [b"RETR x\r\n"]


def test_overlong_line_reported_once_and_discarded() -> None:
    """A line past the limit is reported once, memory stays bounded, and the next line is clean."""
    s = LineSplitter(max_line=16)
    out = s.feed(b"A" * 40)
    assert out == [OverlongLine(b"A" * 40, 16)] and s.pending == 0
    assert s.feed(b"B" * 100) == [] and s.pending == 0
    assert s.feed(b"CC\r\nNOOP\r\n") == [b"NOOP\r\n"]


def test_overlong_complete_line_in_one_chunk() -> None:
    """A whole over-long line in one chunk is reported, not relayed."""
    assert LineSplitter(max_line=8).feed(b"0123456789\r\nOK\r\n") == [
        OverlongLine(b"0123456789\r\n", 8),
        b"OK\r\n",
    ]


@given(
    st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=10),
    st.lists(st.integers(0, 400)),
)
def test_any_chunking_gives_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    """Whatever the TCP chunk boundaries, the same lines come out, byte for byte."""
    data = b"".join(line + b"\r\n" for line in lines)
    assert feed_chunks(LineSplitter(), data, cuts) == [line + b"\r\n" for line in lines]


def test_telnet_ip_dm_before_abor_is_stripped() -> None:
    """IAC IP IAC DM before ABOR (RFC 959 §4.1.3) is removed for parsing only."""
    raw = b"\xff\xf4\xff\xf2ABOR\r\n"
    assert strip_telnet(raw) == b"ABOR\r\n"
    assert parse_command(raw).verb == "ABOR" and parse_command(raw).raw == raw


def test_telnet_escaped_iac_and_negotiation() -> None:
    """IAC IAC stays as one 0xFF; WILL/WONT/DO/DONT drop their option byte too."""
    assert strip_telnet(b"a\xff\xffb\xff\xfb\x01c") == b"a\xffbc"


def test_invalid_utf8_and_nul_become_replacement_characters() -> None:
    """Undecodable bytes never raise; they are shown as U+FFFD."""
    text = line_text(b"CWD \xc3\x28\x00\r\n")
    assert "\ufffd" in text and "\x00" not in text


def test_command_verb_case_insensitive_and_password_hidden_in_repr() -> None:
    """Verbs are upper-cased; the PASS argument is kept but never shown."""
    cmd = parse_command(b"pass hunter2\r\n")
    assert cmd.verb == "PASS" and cmd.arg == "hunter2"
    assert "hunter2" not in repr(cmd) and cmd.loggable_arg == "****"


def test_single_line_reply() -> None:
    """A ``ddd text`` line is a complete reply with its raw bytes."""
    assert ReplyAssembler().feed(b"220 ready\r\n") == Reply(220, ("220 ready",), b"220 ready\r\n")


def test_multiline_reply_ends_only_on_its_own_code() -> None:
    """RFC 959 §4.2: inner lines, even ``211 x``-like ones, do not end a 214 reply."""
    asm = ReplyAssembler()
    lines = [b"214-Help\r\n", b" inner\r\n", b"211 looks like an end\r\n", b"214 End\r\n"]
    results = [asm.feed(line) for line in lines]
    assert results[:3] == [None, None, None]
    reply = results[3]
    assert isinstance(reply, Reply) and reply.code == 214
    assert reply.text == "Help\n inner\n211 looks like an end\nEnd"
    assert reply.mismatched_codes == (211,)
    assert reply.raw == b"".join(lines)


def test_malformed_reply_line() -> None:
    """A line without a three-digit code is reported as malformed, with its bytes."""
    assert ReplyAssembler().feed(b"hello\r\n") == MalformedReply(b"hello\r\n")
    assert isinstance(ReplyAssembler().feed(b"22 short\r\n"), MalformedReply)


def test_never_ending_multiline_reply_is_bounded() -> None:
    """A multi-line reply without its last line is cut at the size limit."""
    asm = ReplyAssembler(max_bytes=100)
    assert asm.feed(b"211-start\r\n") is None
    results = [asm.feed(b"x" * 20 + b"\r\n") for _ in range(10)]
    assert any(isinstance(r, OversizedReply) for r in results)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300)))
def test_parsers_never_raise_on_any_bytes(data: bytes, cuts: list[int]) -> None:
    """Any byte stream, any chunking: framing and reply assembly never raise."""
    asm = ReplyAssembler(max_bytes=200)
    for item in feed_chunks(LineSplitter(max_line=64), data, cuts):
        if isinstance(item, bytes):
            asm.feed(item)
            parse_command(item)
