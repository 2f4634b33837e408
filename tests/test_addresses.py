"""Unit tests of the PASV/EPSV/PORT/EPRT address codecs (data only: nothing is dialled)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftpdiag.core import addresses as a


def test_pasv_reply_parsed_wherever_the_numbers_are() -> None:
    """RFC 959 does not fix the 227 text: find the six numbers anywhere."""
    assert a.parse_pasv_reply("Entering Passive Mode (192,168,1,10,195,80).") == (
        "192.168.1.10",
        50000,
    )
    assert a.parse_pasv_reply("=10,0,0,1,4,1") == ("10.0.0.1", 1025)


@pytest.mark.parametrize(
    "text", ["Entering Passive Mode (garbage)", "(1,2,3,4,5)", "(300,1,1,1,1,1)", "(1,2,3,4,0,0)"]
)
def test_bad_pasv_replies_raise_address_error(text: str) -> None:
    """Garbage, missing or out-of-range numbers give a clear AddressError."""
    with pytest.raises(a.AddressError):
        a.parse_pasv_reply(text)


def test_epsv_reply_and_any_delimiter() -> None:
    """RFC 2428 §3: ``(<d><d><d>port<d>)`` with any printable delimiter."""
    assert a.parse_epsv_reply("Entering Extended Passive Mode (|||6446|)") == 6446
    assert a.parse_epsv_reply("ok (!!!21!)") == 21
    with pytest.raises(a.AddressError):
        a.parse_epsv_reply("Entering Extended Passive Mode (|||99999|)")


def test_eprt_ipv4_and_ipv6() -> None:
    """RFC 2428 §2 EPRT for both families, family checked against the address."""
    assert a.parse_eprt_arg("|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)
    assert a.parse_eprt_arg("|2|::1|5282|") == ("::1", 5282)
    for bad in ("|1|::1|5282|", "|3|1.2.3.4|1|", "|1|host.example|21|", "|1|1.2.3.4|x|", "x"):
        with pytest.raises(a.AddressError):
            a.parse_eprt_arg(bad)


def test_format_round_trips() -> None:
    """Formatting then parsing gives back the same address."""
    assert a.parse_port_arg(a.format_host_port("127.0.0.1", 40001)) == ("127.0.0.1", 40001)
    assert a.parse_eprt_arg(a.format_eprt("::1", 2121)) == ("::1", 2121)
    assert a.format_host_port("::ffff:127.0.0.1", 256) == "127,0,0,1,1,0"
    with pytest.raises(a.AddressError):
        a.format_host_port("::1", 21)


def test_rewrite_keeps_the_server_text() -> None:
    """Only the address changes in a rewritten 227/229; the server's wording stays."""
    assert a.rewrite_pasv_text("Entering passive mode (10,0,0,5,1,2).", "127.0.0.1", 2121) == (
        "Entering passive mode (127,0,0,1,8,73)."
    )
    assert a.rewrite_epsv_text("Extended (|||1|) ok", 2121) == "Extended (|||2121|) ok"


def test_same_host_and_unroutable() -> None:
    """IPv4-mapped IPv6 equals its IPv4; private and unspecified addresses are unroutable."""
    assert a.same_host("::ffff:127.0.0.1", "127.0.0.1") and not a.same_host(
        "127.0.0.2", "127.0.0.1"
    )
    assert (
        a.is_unroutable("10.1.2.3")
        and a.is_unroutable("0.0.0.0")
        and not a.is_unroutable("8.8.8.8")
    )


@given(st.text(max_size=60))
def test_parsers_raise_only_address_error(text: str) -> None:
    """Any text: the codecs succeed or raise AddressError, nothing else."""
    for parse in (a.parse_pasv_reply, a.parse_epsv_reply, a.parse_eprt_arg, a.parse_port_arg):
        with contextlib.suppress(a.AddressError):
            parse(text)


def test_show_brackets_an_ipv6_host() -> None:
    """One formatter for ``host:port`` in logs and messages: IPv6 hosts get brackets."""
    assert a.show(("127.0.0.1", 21)) == "127.0.0.1:21"
    assert a.show(("::1", 2121)) == "[::1]:2121"
