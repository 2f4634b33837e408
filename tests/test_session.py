"""Scripted conversations with the sans-IO session: events in, outputs out, no sockets."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ftpdiag.core.events import (
    GREETING_TIMER,
    CloseControl,
    ControlClosed,
    DataClosed,
    DataConnected,
    DataFailed,
    DataListening,
    DialData,
    Fact,
    FinishData,
    FromClient,
    FromServer,
    ListenData,
    StartTimer,
    TimerFired,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
    completion_timer,
)
from ftpdiag.core.session import Session, SessionConfig

CLIENT = ("127.0.0.1", 50000)
PROXY = ("127.0.0.1", 2121)
UPSTREAM = ("198.51.100.7", 21)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def new_session(**config: Any) -> tuple[Session, Clock]:
    clock = Clock()
    session = Session(SessionConfig(**config), CLIENT, PROXY, UPSTREAM, clock)
    session.start()
    session.handle(UpstreamConnected(("192.0.2.1", 40000), UPSTREAM))
    return session, clock


def facts(outputs: list[Any], event: str) -> list[dict[str, Any]]:
    return [dict(o.fields) for o in outputs if isinstance(o, Fact) and o.event == event]


def wire(outputs: list[Any], kind: type) -> bytes:
    return b"".join(o.data for o in outputs if isinstance(o, kind))


def logged_in() -> tuple[Session, Clock]:
    s, clock = new_session()
    s.handle(FromServer(b"220 hi\r\n"))
    s.handle(FromClient(b"USER u\r\n"))
    s.handle(FromServer(b"331 pw\r\n"))
    s.handle(FromClient(b"PASS p\r\n"))
    s.handle(FromServer(b"230 ok\r\n"))
    return s, clock


def test_greeting_is_relayed_only_when_the_server_sends_it() -> None:
    """Nothing reaches the client before the server's 220; then it is paired with the connection."""
    s, clock = new_session()
    assert wire(s.handle(TimerFired(completion_timer(9))), ToClient) == b""
    clock.now += 0.002
    out = s.handle(FromServer(b"220 vsFTPd\r\n"))
    assert wire(out, ToClient) == b"220 vsFTPd\r\n"
    (reply,) = facts(out, "reply")
    assert reply["command"] is None and "greeting" in reply["state"] and reply["latency_ms"] == 2.0


def test_replies_pair_with_commands_and_measure_latency() -> None:
    """Each reply is paired with the command it answers, with its round-trip time."""
    s, clock = logged_in()
    s.handle(FromClient(b"PWD\r\nNOOP\r\n"))
    clock.now += 0.010
    out = s.handle(FromServer(b'257 "/"\r\n200 ok\r\n'))
    assert [(r["command"], r["code"], r["latency_ms"]) for r in facts(out, "reply")] == [
        ("PWD", 257, 10.0),
        ("NOOP", 200, 10.0),
    ]


def test_password_never_appears_in_facts() -> None:
    """PASS and ACCT arguments are logged as **** and never leave the core otherwise."""
    s, _ = new_session()
    s.handle(FromServer(b"220 hi\r\n"))
    out = s.handle(FromClient(b"USER u\r\n")) + s.handle(FromServer(b"331 x\r\n"))
    out += s.handle(FromClient(b"PASS s3cr3t-Pw\r\n")) + s.handle(
        FromServer(b"530 Login incorrect.\r\n")
    )
    out += s.handle(FromClient(b"ACCT acc-secret\r\n"))
    for fact in (o for o in out if isinstance(o, Fact)):
        assert "s3cr3t-Pw" not in repr(fact.fields) and "acc-secret" not in repr(fact.fields)
    assert b"PASS s3cr3t-Pw\r\n" in wire(out, ToServer)
    assert [c["arg"] for c in facts(out, "command")] == ["u", "****", "****"]


def test_passive_reply_is_rewritten_to_the_proxy_listener() -> None:
    """PASV: the client gets the proxy's listener; the proxy dials the control peer's port."""
    s, _ = logged_in()
    out = s.handle(FromClient(b"PASV\r\n"))
    assert ListenData(1, "client", "127.0.0.1", "127.0.0.1") in out
    assert wire(out, ToServer) == b""  # waits for the listener
    out = s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
    assert wire(out, ToServer) == b"PASV\r\n"
    out = s.handle(FromServer(b"227 Entering Passive Mode (10,0,0,5,19,137).\r\n"))
    assert DialData(1, "server", ("198.51.100.7", 5001)) in out
    assert wire(out, ToClient) == b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n"
    (passive,) = facts(out, "data.passive")
    assert passive["advertised"] == "10.0.0.5:5001" and passive["dialled"] == "198.51.100.7:5001"


def test_use_pasv_address_dials_the_advertised_host() -> None:
    """With use_pasv_address the proxy trusts the 227 address."""
    s, _ = new_session(use_pasv_address=True)
    s.handle(FromServer(b"220 hi\r\n"))
    s.handle(FromClient(b"PASV\r\n"))
    s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
    out = s.handle(FromServer(b"227 =10,0,0,5,19,137\r\n"))
    assert DialData(1, "server", ("10.0.0.5", 5001)) in out


def test_epsv_rewrite_keeps_the_text() -> None:
    """EPSV: only the port in ``(|||port|)`` changes."""
    s, _ = logged_in()
    s.handle(FromClient(b"EPSV\r\n"))
    s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
    out = s.handle(FromServer(b"229 Entering Extended Passive Mode (|||6446|)\r\n"))
    assert DialData(1, "server", ("198.51.100.7", 6446)) in out
    assert wire(out, ToClient) == b"229 Entering Extended Passive Mode (|||40100|)\r\n"


def test_port_to_a_foreign_host_is_refused() -> None:
    """FTP bounce (RFC 2577): PORT naming another host gets 500 and is not forwarded."""
    s, _ = logged_in()
    out = s.handle(FromClient(b"PORT 10,0,0,9,0,25\r\n"))
    assert wire(out, ToServer) == b"" and wire(out, ToClient).startswith(b"500 ")
    assert facts(out, "security.bounce_refused")[0]["requested"] == "10.0.0.9:25"


def test_malformed_port_gets_501() -> None:
    """A PORT argument that is not six numbers gets 501 and a fact for the diagnosis."""
    s, _ = logged_in()
    out = s.handle(FromClient(b"PORT garbage\r\n"))
    assert wire(out, ToClient).startswith(b"501 ") and facts(out, "protocol.bad_address")


def test_active_client_is_dialled_at_the_transfer_command() -> None:
    """PORT: the server gets the proxy's listener; the client is dialled when RETR is sent."""
    s, _ = logged_in()
    out = s.handle(FromClient(b"PORT 127,0,0,1,200,10\r\n"))
    assert ListenData(1, "server", "192.0.2.1", "198.51.100.7") in out
    out = s.handle(DataListening(1, "server", ("192.0.2.1", 40200)))
    assert wire(out, ToServer) == b"PORT 192,0,2,1,157,8\r\n"
    assert wire(s.handle(FromServer(b"200 ok\r\n")), ToClient) == b"200 ok\r\n"
    out = s.handle(FromClient(b"RETR f\r\n"))
    assert (
        DialData(1, "client", ("127.0.0.1", 51210)) in out and wire(out, ToServer) == b"RETR f\r\n"
    )


def test_upstream_passive_translation_for_an_active_client() -> None:
    """--upstream-mode passive: the client's PORT becomes PASV toward the server."""
    s, _ = new_session(upstream_mode="passive")
    s.handle(FromServer(b"220 hi\r\n"))
    out = s.handle(FromClient(b"PORT 127,0,0,1,200,10\r\n"))
    assert wire(out, ToServer) == b"PASV\r\n"
    out = s.handle(FromServer(b"227 (198,51,100,7,10,0)\r\n"))
    assert DialData(1, "server", ("198.51.100.7", 2560)) in out
    assert wire(out, ToClient).startswith(b"200 PORT command successful")


def test_auto_mode_falls_back_to_active_when_pasv_is_refused() -> None:
    """--upstream-mode auto: a 5xx to PASV makes the proxy send PORT instead."""
    s, _ = new_session(upstream_mode="auto")
    s.handle(FromServer(b"220 hi\r\n"))
    s.handle(FromClient(b"PASV\r\n"))
    s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
    out = s.handle(FromServer(b"502 PASV disabled\r\n"))
    assert (
        ListenData(1, "server", "192.0.2.1", "198.51.100.7") in out and wire(out, ToClient) == b""
    )
    out = s.handle(DataListening(1, "server", ("192.0.2.1", 40200)))
    assert wire(out, ToServer) == b"PORT 192,0,2,1,157,8\r\n"
    out = s.handle(FromServer(b"200 ok\r\n"))
    assert wire(out, ToClient) == b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n"


def passive_transfer(s: Session) -> None:
    s.handle(FromClient(b"PASV\r\n"))
    s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
    s.handle(FromServer(b"227 (198,51,100,7,10,0)\r\n"))
    s.handle(DataConnected(1, "server", ("198.51.100.7", 2560)))
    s.handle(FromClient(b"RETR big\r\n"))


def test_transfer_command_waits_for_the_dial_to_the_passive_port() -> None:
    """RETR is forwarded only once the proxy's connection to the server's passive port is up;
    if that connection fails, the client gets 425 and the server never sees RETR (it would
    otherwise wait for a data connection that never comes)."""
    for settle, forwarded in [
        (DataConnected(1, "server", ("198.51.100.7", 2560)), b"RETR big\r\n"),
        (DataFailed(1, "server", "refused", "connection refused"), b""),
    ]:
        s, _ = logged_in()
        s.handle(FromClient(b"PASV\r\n"))
        s.handle(DataListening(1, "client", ("127.0.0.1", 40100)))
        s.handle(FromServer(b"227 (198,51,100,7,10,0)\r\n"))
        out = s.handle(FromClient(b"RETR big\r\n"))
        assert wire(out, ToServer) == b"" and wire(out, ToClient) == b""
        out = s.handle(settle)
        assert wire(out, ToServer) == forwarded
        if not forwarded:
            assert wire(out, ToClient).startswith(b"425 ")
            assert "server side refused" in wire(out, ToClient).decode()
        else:
            assert facts(out, "transfer.start")
        # Commands other than transfers are never held.
        assert wire(s.handle(FromClient(b"NOOP\r\n")), ToServer) == b"NOOP\r\n"


def test_success_reply_after_a_stall_cut_becomes_426() -> None:
    """When the proxy cut a stalled data connection, a server's 226 (it had written all into
    its socket) must not tell the client the file is whole: the client gets 426, whether the
    226 came after the cut or was already waiting behind the data."""
    stall = DataFailed(1, "server", "stall", "no data for 1 s")
    closed = DataClosed(1, 100, 0, "closed", "closed", "client", 2.0)
    for order in ("226 after the cut", "226 before the cut"):
        s, _ = logged_in()
        passive_transfer(s)
        s.handle(FromServer(b"150 here\r\n"))
        out = []
        if order == "226 before the cut":
            assert wire(s.handle(FromServer(b"226 done\r\n")), ToClient) == b""  # held
        out += s.handle(stall)
        out += s.handle(closed)
        if order == "226 after the cut":
            out += s.handle(FromServer(b"226 done\r\n"))
        sent = wire(out, ToClient)
        assert sent.startswith(b"426 ftpdiag: data connection stalled") and b"226" not in sent
        assert facts(out, "proxy.reply")[0]["code"] == 426
        (end,) = facts(out, "transfer.end")
        assert end["outcome"] == 226 and end["bytes"] == 100  # the server's word, the bytes


def test_final_reply_waits_for_the_data_to_be_delivered() -> None:
    """226 reaches the client only after the data pipe has closed (no early completion)."""
    s, _ = logged_in()
    passive_transfer(s)
    assert wire(s.handle(FromServer(b"150 here (10 bytes)\r\n")), ToClient).startswith(b"150")
    out = s.handle(FromServer(b"226 done\r\n"))
    assert FinishData(1, abort=False) in out and wire(out, ToClient) == b""
    out = s.handle(DataClosed(1, 10, 0, "eof", "eof", "server", 0.5))
    assert wire(out, ToClient) == b"226 done\r\n"
    (end,) = facts(out, "transfer.end")
    assert (
        end["bytes"] == 10
        and end["outcome"] == 226
        and end["mode"] == {"client": "passive", "server": "passive"}
    )


def test_abort_relays_426_then_226_at_once() -> None:
    """ABOR: the client waits for replies, not for abandoned data: 426 and 226 pass in order
    at once, the pipe is aborted, and the transfer ends as aborted by the client."""
    s, _ = logged_in()
    passive_transfer(s)
    s.handle(FromServer(b"150 here\r\n"))
    s.handle(FromClient(b"\xff\xf4\xff\xf2ABOR\r\n"))
    out = s.handle(FromServer(b"426 aborted\r\n226 ABOR ok\r\n"))
    assert FinishData(1, abort=True) in out
    assert wire(out, ToClient) == b"426 aborted\r\n226 ABOR ok\r\n"
    out = s.handle(DataClosed(1, 4096, 0, "closed", "reset", "server", 0.1))
    assert facts(out, "transfer.end")[0]["aborted_by"] == "client"


def test_server_426_drains_what_got_through() -> None:
    """A server 426 means its end closed: the pipe drains and 426 waits for the data."""
    s, _ = logged_in()
    passive_transfer(s)
    s.handle(FromServer(b"150 here\r\n"))
    out = s.handle(FromServer(b"426 Connection closed; transfer aborted.\r\n"))
    assert FinishData(1, abort=False) in out and wire(out, ToClient) == b""
    out = s.handle(DataClosed(1, 5000, 0, "eof", "eof", "server", 0.1))
    assert wire(out, ToClient).startswith(b"426 ")


def test_data_closed_before_final_reply_relays_it_at_once() -> None:
    """When the data is done first, the final reply is relayed as soon as it comes."""
    s, _ = logged_in()
    passive_transfer(s)
    s.handle(DataClosed(1, 10, 0, "eof", "eof", "server", 0.5))
    out = s.handle(FromServer(b"226 done\r\n"))
    assert wire(out, ToClient) == b"226 done\r\n" and facts(out, "transfer.end")


def test_missing_completion_reply_is_reported() -> None:
    """Data finished but no final reply: a timer then a transfer.no_completion fact."""
    s, _ = logged_in()
    passive_transfer(s)
    out = s.handle(DataClosed(1, 10, 0, "eof", "eof", "server", 0.5))
    assert StartTimer(completion_timer(1), 30.0) in out
    assert facts(s.handle(TimerFired(completion_timer(1))), "transfer.no_completion")


def test_upstream_failure_gives_421_and_closes() -> None:
    """A refused upstream: the client gets a 421 saying why, and the session ends."""
    clock = Clock()
    s = Session(SessionConfig(), CLIENT, PROXY, UPSTREAM, clock)
    out = s.handle(UpstreamFailed("refused", "connection refused"))
    assert wire(out, ToClient).startswith(b"421 ftpdiag: cannot reach the server 198.51.100.7:21")
    assert any(isinstance(o, CloseControl) for o in out) and facts(out, "session.close")


def test_no_greeting_times_out() -> None:
    """The greeting timer fires: 421 to the client, greeting.timeout fact, session closed."""
    s, _ = new_session(greeting_timeout=3)
    out = s.handle(TimerFired(GREETING_TIMER))
    assert facts(out, "greeting.timeout") and wire(out, ToClient).startswith(b"421 ")


def test_overlong_client_line_gets_500_and_session_goes_on() -> None:
    """An over-long command is answered 500 and discarded; later commands still work."""
    s, _ = new_session(max_line=64)
    s.handle(FromServer(b"220 hi\r\n"))
    out = s.handle(FromClient(b"X" * 200 + b"\r\nNOOP\r\n"))
    assert wire(out, ToClient).startswith(b"500 ") and wire(out, ToServer) == b"NOOP\r\n"


def test_overlong_server_line_closes_with_421() -> None:
    """A server line past the limit ends the session cleanly with 421."""
    s, _ = new_session(max_line=64)
    out = s.handle(FromServer(b"2" * 100))
    assert wire(out, ToClient).startswith(b"421 ") and any(isinstance(o, CloseControl) for o in out)


def test_server_close_while_waiting_tells_the_client() -> None:
    """The server drops the control connection with a command pending: the client gets 421."""
    s, _ = logged_in()
    s.handle(FromClient(b"LIST\r\n"))
    out = s.handle(ControlClosed("server", clean=False, detail="reset"))
    assert (
        wire(out, ToClient).startswith(b"421 ")
        and facts(out, "session.close")[0]["reason"] == "server reset"
    )


def test_unsolicited_and_malformed_replies_are_relayed_and_reported() -> None:
    """Lines nobody asked for are relayed unchanged and flagged."""
    s, _ = logged_in()
    out = s.handle(FromServer(b"200 surprise\r\nnot a reply\r\n"))
    assert wire(out, ToClient) == b"200 surprise\r\nnot a reply\r\n"
    assert facts(out, "reply")[0]["unsolicited"] and facts(out, "protocol.malformed_reply")


def test_lprt_is_answered_502() -> None:
    """LPRT/LPSV are not relayed: a clean 502 naming the alternative."""
    s, _ = logged_in()
    out = s.handle(FromClient(b"LPSV\r\n"))
    assert wire(out, ToClient).startswith(b"502 LPSV") and wire(out, ToServer) == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=80)), max_size=25))
def test_any_byte_streams_never_raise(chunks: list[tuple[bool, bytes]]) -> None:
    """Any bytes from either side, in any chunks: the session never raises."""
    s, _ = new_session(max_line=128, max_reply_bytes=512)
    for from_client, data in chunks:
        s.handle(FromClient(data) if from_client else FromServer(data))
