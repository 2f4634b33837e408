"""The session's main paths as whole transcripts (tests/playbook.py): every input, every output.

These pin the behaviour of ``ftpdiag/core/session.py`` exactly, so that moving its code into
smaller modules is checked step by step: a changed output or order fails with a diff.
"""

from __future__ import annotations

import pytest

from ftpdiag.core.events import (
    GREETING_TIMER,
    IDLE_TIMER,
    BlindTraffic,
    CancelTimer,
    CloseControl,
    ControlClosed,
    DataClosed,
    DataConnected,
    DataFailed,
    DataListening,
    DialData,
    FinishData,
    FromClient,
    FromServer,
    GoBlind,
    ListenData,
    Shutdown,
    StartTimer,
    StartTLS,
    TimerFired,
    TLSEstablished,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
    completion_timer,
)
from ftpdiag.core.session import Gate
from tests.playbook import Playbook, Start, Wait, fact, greeted, logged_in

STALLED = "ftpdiag: data connection stalled (no data for 300 s) and closed; transfer aborted."


def test_pasv_download_holds_the_final_reply_until_the_data_is_through() -> None:
    """PASV: the proxy listens, asks the server, dials its port, and holds 226 behind the data."""
    pb = logged_in()
    assert (
        pb
        >> FromClient(b"TYPE I\r\n")
        << fact("command", verb="TYPE", arg="I")
        << ToServer(b"TYPE I\r\n")
        >> FromServer(b"200 ok\r\n")
        << fact("reply", code=200, text="ok", command="TYPE", arg="I", state=["logged_in"])
        << ToClient(b"200 ok\r\n")
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        >> DataListening(pipe=1, side="client", address=("127.0.0.1", 40100))
        << fact("data.listen", pipe=1, side="client", address="127.0.0.1:40100")
        << ToServer(b"PASV\r\n")
        >> FromServer(b"227 Entering Passive Mode (10,0,0,5,19,137).\r\n")
        << fact(
            "reply",
            code=227,
            text="Entering Passive Mode (10,0,0,5,19,137).",
            command="PASV",
            arg="",
            state=["logged_in"],
        )
        << fact("data.passive", pipe=1, advertised="10.0.0.5:5001", dialled="198.51.100.7:5001")
        << DialData(pipe=1, side="server", address=("198.51.100.7", 5001), tls=False)
        << ToClient(b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n")
        >> FromClient(b"RETR f\r\n")
    )
    assert pb.session.gate() is Gate.DIALLING, "RETR must wait for the dial to the server"
    assert (
        pb
        >> DataConnected(pipe=1, side="server", peer=("198.51.100.7", 5001))
        << fact("data.connect", pipe=1, side="server", peer="198.51.100.7:5001")
        << fact("command", verb="RETR", arg="f")
        << fact(
            "transfer.start",
            pipe=1,
            command="RETR",
            mode={"client": "passive", "server": "passive"},
            type="I",
        )
        << ToServer(b"RETR f\r\n")
        >> FromServer(b"150 here\r\n")
        << fact(
            "reply",
            code=150,
            text="here",
            command="RETR",
            arg="f",
            state=["logged_in", "passive", "transfer"],
        )
        << ToClient(b"150 here\r\n")
        >> DataConnected(pipe=1, side="client", peer=("127.0.0.1", 50001))
        << fact("data.connect", pipe=1, side="client", peer="127.0.0.1:50001")
        >> FromServer(b"226 done\r\n")
        << fact(
            "reply",
            code=226,
            text="done",
            command="RETR",
            arg="f",
            state=["logged_in", "passive", "transfer"],
        )
        << CancelTimer(completion_timer(1))
        << FinishData(pipe=1, abort=False)
        >> FromClient(b"NOOP\r\n")
        << fact("command", verb="NOOP", arg="")
        << ToServer(b"NOOP\r\n")
        >> FromServer(b"200 noop\r\n")
        << fact(
            "reply",
            code=200,
            text="noop",
            command="NOOP",
            arg="",
            state=["logged_in", "passive", "transfer"],
        )
        >> DataClosed(
            pipe=1,
            to_client=1000,
            to_server=0,
            client_end="eof",
            server_end="eof",
            first_closed="server",
            duration=0.5,
        )
        << fact("data.close", pipe=1)
        << fact("transfer.end", pipe=1, bytes=1000, outcome=226, aborted_by=None)
        << ToClient(b"226 done\r\n")
        << ToClient(b"200 noop\r\n")
    )


def test_epsv_is_answered_with_the_proxy_port_in_the_server_text() -> None:
    """EPSV: the server's 229 text is kept with the proxy's port in it."""
    pb = logged_in()
    assert (
        pb
        >> FromClient(b"EPSV\r\n")
        << fact("command", verb="EPSV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        >> DataListening(pipe=1, side="client", address=("127.0.0.1", 40100))
        << fact("data.listen", pipe=1, side="client", address="127.0.0.1:40100")
        << ToServer(b"EPSV\r\n")
        >> FromServer(b"229 Entering Extended Passive Mode (|||5001|)\r\n")
        << fact(
            "reply",
            code=229,
            text="Entering Extended Passive Mode (|||5001|)",
            command="EPSV",
            arg="",
            state=["logged_in"],
        )
        << fact("data.passive", pipe=1, advertised="198.51.100.7:5001", dialled="198.51.100.7:5001")
        << DialData(pipe=1, side="server", address=("198.51.100.7", 5001), tls=False)
        << ToClient(b"229 Entering Extended Passive Mode (|||40100|)\r\n")
    )


def test_port_becomes_pasv_toward_the_server_in_passive_upstream_mode() -> None:
    """PORT under --upstream-mode passive: PASV to the server, 200 to the client, dial at STOR."""
    pb = logged_in(upstream_mode="passive")
    assert (
        pb
        >> FromClient(b"PORT 127,0,0,1,200,10\r\n")
        << fact("command", verb="PORT", arg="127,0,0,1,200,10")
        << ToServer(b"PASV\r\n")
        >> FromServer(b"227 Entering Passive Mode (198,51,100,7,19,137).\r\n")
        << fact(
            "reply",
            code=227,
            text="Entering Passive Mode (198,51,100,7,19,137).",
            command="PORT",
            upstream_command="PASV",
            pipe=1,
            arg="127,0,0,1,200,10",
            state=["logged_in"],
        )
        << fact("data.passive", pipe=1, advertised="198.51.100.7:5001", dialled="198.51.100.7:5001")
        << DialData(pipe=1, side="server", address=("198.51.100.7", 5001), tls=False)
        << ToClient(b"200 PORT command successful (ftpdiag relays it).\r\n")
        >> DataConnected(pipe=1, side="server", peer=("198.51.100.7", 5001))
        << fact("data.connect", pipe=1, side="server", peer="198.51.100.7:5001")
        >> FromClient(b"STOR up\r\n")
        << fact("command", verb="STOR", arg="up")
        << fact(
            "transfer.start",
            pipe=1,
            command="STOR",
            mode={"client": "active", "server": "passive"},
            type="A",
        )
        << DialData(pipe=1, side="client", address=("127.0.0.1", 51210), tls=False)
        << ToServer(b"STOR up\r\n")
        >> DataConnected(pipe=1, side="client", peer=("127.0.0.1", 51210))
        << fact("data.connect", pipe=1, side="client", peer="127.0.0.1:51210")
        >> FromServer(b"150 go\r\n")
        << fact(
            "reply",
            code=150,
            text="go",
            command="STOR",
            arg="up",
            state=["logged_in", "active", "transfer"],
        )
        << ToClient(b"150 go\r\n")
        >> DataClosed(
            pipe=1,
            to_client=0,
            to_server=500,
            client_end="eof",
            server_end="eof",
            first_closed="client",
            duration=0.2,
        )
        << fact("data.close", pipe=1)
        << StartTimer(completion_timer(1), 30.0)
        >> FromServer(b"226 stored\r\n")
        << fact(
            "reply",
            code=226,
            text="stored",
            command="STOR",
            arg="up",
            state=["logged_in", "active"],
        )
        << CancelTimer(completion_timer(1))
        << ToClient(b"226 stored\r\n")
        << fact("transfer.end", pipe=1, bytes=500, outcome=226, aborted_by=None)
    )


def test_eprt_is_relayed_as_eprt_to_the_proxy_listener() -> None:
    """EPRT in the same mode: the server gets an EPRT with the proxy's own listener in it."""
    pb = logged_in()
    assert (
        pb
        >> FromClient(b"EPRT |1|127.0.0.1|51000|\r\n")
        << fact("command", verb="EPRT", arg="|1|127.0.0.1|51000|")
        << ListenData(pipe=1, side="server", host="192.0.2.1", allow_host="198.51.100.7", tls=False)
        >> DataListening(pipe=1, side="server", address=("192.0.2.1", 40200))
        << fact("data.listen", pipe=1, side="server", address="192.0.2.1:40200")
        << ToServer(b"EPRT |1|192.0.2.1|40200|\r\n")
        >> FromServer(b"200 EPRT ok\r\n")
        << fact(
            "reply",
            code=200,
            text="EPRT ok",
            command="EPRT",
            arg="|1|127.0.0.1|51000|",
            state=["logged_in"],
        )
        << ToClient(b"200 EPRT ok\r\n")
        >> FromClient(b"LIST\r\n")
        << fact("command", verb="LIST", arg="")
        << fact(
            "transfer.start",
            pipe=1,
            command="LIST",
            mode={"client": "active", "server": "active"},
            type="A",
        )
        << DialData(pipe=1, side="client", address=("127.0.0.1", 51000), tls=False)
        << ToServer(b"LIST\r\n")
        >> FromServer(b"150 here\r\n")
        << fact(
            "reply", code=150, text="here", command="LIST", arg="", state=["logged_in", "active"]
        )
        << ToClient(b"150 here\r\n")
    )


def test_pasv_becomes_port_toward_the_server_in_active_upstream_mode() -> None:
    """PASV under --upstream-mode active: two listeners, PORT to the server, 227 to the client."""
    pb = logged_in(upstream_mode="active")
    assert (
        pb
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        << ListenData(pipe=1, side="server", host="192.0.2.1", allow_host="198.51.100.7", tls=False)
        >> DataListening(pipe=1, side="client", address=("127.0.0.1", 40100))
        << fact("data.listen", pipe=1, side="client", address="127.0.0.1:40100")
        >> DataListening(pipe=1, side="server", address=("192.0.2.1", 40200))
        << fact("data.listen", pipe=1, side="server", address="192.0.2.1:40200")
        << ToServer(b"PORT 192,0,2,1,157,8\r\n")
        >> FromServer(b"200 PORT ok\r\n")
        << fact("reply", code=200, command="PASV", upstream_command="PORT", pipe=1)
        << ToClient(b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n")
    )


def test_auto_mode_falls_back_to_port_when_pasv_is_refused() -> None:
    """--upstream-mode auto: a 500 to PASV makes the proxy listen and send PORT instead."""
    pb = logged_in(upstream_mode="auto")
    assert (
        pb
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        >> DataListening(pipe=1, side="client", address=("127.0.0.1", 40100))
        << fact("data.listen", pipe=1, side="client", address="127.0.0.1:40100")
        << ToServer(b"PASV\r\n")
        >> FromServer(b"500 no passive\r\n")
        << fact("reply", code=500, text="no passive", command="PASV", arg="", state=["logged_in"])
        << fact("data.setup_failed", pipe=1, server_mode="passive", code=500)
        << fact("data.fallback", pipe=1, to="active", code=500)
        << ListenData(pipe=1, side="server", host="192.0.2.1", allow_host="198.51.100.7", tls=False)
        >> DataListening(pipe=1, side="server", address=("192.0.2.1", 40200))
        << fact("data.listen", pipe=1, side="server", address="192.0.2.1:40200")
        << ToServer(b"PORT 192,0,2,1,157,8\r\n")
        >> FromServer(b"200 PORT ok\r\n")
        << fact("reply", code=200, command="PASV", upstream_command="PORT", pipe=1)
        << ToClient(b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n")
    )


def downloading() -> Playbook:
    """A playbook past PASV, RETR, its 150 and both data connections (asserted)."""
    pb = logged_in()
    assert (
        pb
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        >> DataListening(pipe=1, side="client", address=("127.0.0.1", 40100))
        << fact("data.listen", pipe=1, side="client", address="127.0.0.1:40100")
        << ToServer(b"PASV\r\n")
        >> FromServer(b"227 Entering Passive Mode (198,51,100,7,19,137).\r\n")
        << fact(
            "reply",
            code=227,
            text="Entering Passive Mode (198,51,100,7,19,137).",
            command="PASV",
            arg="",
            state=["logged_in"],
        )
        << fact("data.passive", pipe=1, advertised="198.51.100.7:5001", dialled="198.51.100.7:5001")
        << DialData(pipe=1, side="server", address=("198.51.100.7", 5001), tls=False)
        << ToClient(b"227 Entering Passive Mode (127,0,0,1,156,164).\r\n")
        >> DataConnected(pipe=1, side="server", peer=("198.51.100.7", 5001))
        << fact("data.connect", pipe=1, side="server", peer="198.51.100.7:5001")
        >> FromClient(b"RETR f\r\n")
        << fact("command", verb="RETR", arg="f")
        << fact(
            "transfer.start",
            pipe=1,
            command="RETR",
            mode={"client": "passive", "server": "passive"},
            type="A",
        )
        << ToServer(b"RETR f\r\n")
        >> FromServer(b"150 here\r\n")
        << fact(
            "reply",
            code=150,
            text="here",
            command="RETR",
            arg="f",
            state=["logged_in", "passive", "transfer"],
        )
        << ToClient(b"150 here\r\n")
        >> DataConnected(pipe=1, side="client", peer=("127.0.0.1", 50001))
        << fact("data.connect", pipe=1, side="client", peer="127.0.0.1:50001")
    )
    return pb


def test_a_transfer_after_abor_gets_426_and_226_at_once() -> None:
    """ABOR: final replies are not held behind abandoned data; the pipe is aborted."""
    pb = downloading()
    assert (
        pb
        >> FromClient(b"ABOR\r\n")
        << fact("command", verb="ABOR", arg="")
        << ToServer(b"ABOR\r\n")
        >> FromServer(b"426 aborted\r\n226 abor ok\r\n")
        << fact(
            "reply",
            code=426,
            text="aborted",
            command="RETR",
            arg="f",
            state=["logged_in", "passive", "transfer", "abort"],
        )
        << CancelTimer(completion_timer(1))
        << FinishData(pipe=1, abort=True)
        << ToClient(b"426 aborted\r\n")
        << fact(
            "reply",
            code=226,
            text="abor ok",
            command="ABOR",
            arg="",
            state=["logged_in", "passive", "transfer", "abort"],
        )
        << ToClient(b"226 abor ok\r\n")
        >> DataClosed(
            pipe=1,
            to_client=10,
            to_server=0,
            client_end="closed",
            server_end="reset",
            first_closed="client",
            duration=0.1,
        )
        << fact("data.close", pipe=1)
        << fact("transfer.end", pipe=1, bytes=10, outcome=426, aborted_by="client")
    )


def test_a_stall_turns_the_held_success_reply_into_426() -> None:
    """A stall cut after the server's 226 replaces the held 226 by the proxy's 426."""
    pb = downloading()
    assert (
        pb
        >> FromServer(b"226 done\r\n")
        << fact(
            "reply",
            code=226,
            text="done",
            command="RETR",
            arg="f",
            state=["logged_in", "passive", "transfer"],
        )
        << CancelTimer(completion_timer(1))
        << FinishData(pipe=1, abort=False)
        >> DataFailed(pipe=1, side="client", kind="stall", detail="no data for 300 s")
        << fact("data.failed", pipe=1, side="client", kind="stall")
        << fact("proxy.reply", code=426, text=STALLED, command="RETR")
        >> DataClosed(
            pipe=1,
            to_client=10,
            to_server=0,
            client_end="closed",
            server_end="eof",
            first_closed="client",
            duration=300.0,
        )
        << fact("data.close", pipe=1)
        << fact("transfer.end", pipe=1, bytes=10, outcome=226, aborted_by=None)
        << ToClient(b"426 " + STALLED.encode() + b"\r\n")
    )


def test_a_listener_that_cannot_open_answers_425() -> None:
    """A data listener the proxy cannot open: PASV gets 425 and the next command goes on."""
    pb = logged_in()
    assert (
        pb
        >> FromClient(b"PASV\r\nNOOP\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=False)
        >> DataFailed(pipe=1, side="client", kind="listen", detail="no port free")
        << fact("data.failed", pipe=1, side="client", kind="listen")
        << FinishData(pipe=1, abort=True)
        << fact(
            "proxy.reply",
            code=425,
            text="ftpdiag: cannot open a data listener: no port free.",
            command=None,
        )
        << ToClient(b"425 ftpdiag: cannot open a data listener: no port free.\r\n")
        << fact("command", verb="NOOP", arg="")
        << ToServer(b"NOOP\r\n")
        >> FromServer(b"200 ok\r\n")
        << fact("reply", code=200, text="ok", command="NOOP", arg="", state=["logged_in"])
        << ToClient(b"200 ok\r\n")
    )


def test_a_missing_completion_reply_is_reported_after_the_timer() -> None:
    """Data closed but no final reply: the completion timer reports transfer.no_completion."""
    pb = downloading()
    assert (
        pb
        >> DataClosed(
            pipe=1,
            to_client=10,
            to_server=0,
            client_end="eof",
            server_end="eof",
            first_closed="server",
            duration=0.1,
        )
        << fact("data.close", pipe=1)
        << StartTimer(completion_timer(1), 30.0)
        >> TimerFired(completion_timer(1))
        << fact("transfer.no_completion", pipe=1, command="RETR", path="f", bytes=10, waited_s=30.0)
    )


def test_no_greeting_times_out_with_421() -> None:
    """The greeting timer: no 220 in time gives the client 421 and closes."""
    pb = Playbook()
    assert (
        pb
        >> Start()
        << fact(
            "session.open",
            client="127.0.0.1:50000",
            upstream="198.51.100.7:21",
            upstream_mode="same",
        )
        >> UpstreamConnected(local=("192.0.2.1", 40000), peer=("198.51.100.7", 21))
        << fact("upstream.connect", local="192.0.2.1:40000", peer="198.51.100.7:21")
        << StartTimer(GREETING_TIMER, 10.0)
        >> TimerFired(GREETING_TIMER)
        << fact("greeting.timeout", seconds=10.0)
        << fact(
            "proxy.reply",
            code=421,
            text="ftpdiag: the server sent no greeting within 10 s.",
            command=None,
        )
        << ToClient(b"421 ftpdiag: the server sent no greeting within 10 s.\r\n")
        << fact("session.close", reason="no greeting", commands=0, replies=0, transfers=0, bytes=0)
        << CloseControl(reason="no greeting")
    )


def idle_after_noop() -> Playbook:
    """--idle-timeout 60: the opening and a NOOP (asserted); every line restarts the timer."""
    pb = Playbook(idle_timeout=60.0)
    assert (
        pb
        >> Start()
        << fact(
            "session.open",
            client="127.0.0.1:50000",
            upstream="198.51.100.7:21",
            upstream_mode="same",
        )
        >> UpstreamConnected(local=("192.0.2.1", 40000), peer=("198.51.100.7", 21))
        << fact("upstream.connect", local="192.0.2.1:40000", peer="198.51.100.7:21")
        << StartTimer(GREETING_TIMER, 10.0)
        << StartTimer(IDLE_TIMER, 60.0)
        >> FromServer(b"220 hi\r\n")
        << StartTimer(IDLE_TIMER, 60.0)
        << fact(
            "reply", code=220, text="hi", command=None, arg=None, state=["greeting", "before_login"]
        )
        << CancelTimer(GREETING_TIMER)
        << ToClient(b"220 hi\r\n")
        >> FromClient(b"NOOP\r\n")
        << StartTimer(IDLE_TIMER, 60.0)
        << fact("command", verb="NOOP", arg="")
        << ToServer(b"NOOP\r\n")
    )
    return pb


def test_an_idle_control_connection_is_closed() -> None:
    """--idle-timeout: every line restarts the timer; when it fires with nothing pending, 421."""
    pb = idle_after_noop()
    assert (
        pb
        >> FromServer(b"200 ok\r\n")
        << StartTimer(IDLE_TIMER, 60.0)
        << fact("reply", code=200, text="ok", command="NOOP", arg="", state=["before_login"])
        << ToClient(b"200 ok\r\n")
        >> TimerFired(IDLE_TIMER)
        << fact("control.idle_timeout", seconds=60.0, awaiting=None, transfer_stalled=False)
        << fact(
            "proxy.reply", code=421, text="ftpdiag: no activity for 60 s; closing.", command=None
        )
        << ToClient(b"421 ftpdiag: no activity for 60 s; closing.\r\n")
        << fact("session.close", reason="idle timeout", commands=1, replies=2, transfers=0, bytes=0)
        << CloseControl(reason="idle timeout")
    )


def test_a_silent_server_is_named_when_the_idle_timer_fires() -> None:
    """--idle-timeout with a command unanswered: control.server_silent and 421."""
    pb = idle_after_noop()
    assert (
        pb
        >> Wait(seconds=60)
        >> TimerFired(IDLE_TIMER)
        << fact("control.server_silent", awaiting="NOOP", seconds=60.0)
        << fact(
            "proxy.reply",
            code=421,
            text="ftpdiag: the server did not answer NOOP in 60 s.",
            command=None,
        )
        << ToClient(b"421 ftpdiag: the server did not answer NOOP in 60 s.\r\n")
        << fact(
            "session.close", reason="server silent", commands=1, replies=1, transfers=0, bytes=0
        )
        << CloseControl(reason="server silent")
    )


def test_the_proxy_speaks_explicit_ftps_to_the_server_after_the_greeting() -> None:
    """--upstream-tls explicit: AUTH TLS, PBSZ 0, PROT P while the client's lines wait."""
    pb = greeted(ToServer(b"AUTH TLS\r\n"), upstream_tls="explicit")
    assert (
        pb
        >> FromClient(b"USER u\r\n")
        >> FromServer(b"234 go\r\n")
        << fact("reply", code=234, text="go", command="AUTH", arg="TLS", state=["before_login"])
        << StartTLS(side="server")
        >> TLSEstablished(side="server", facts={"version": "TLSv1.3"}, pipe=None)
        << fact("tls.established", side="server", channel="control", pipe=None, version="TLSv1.3")
        << ToServer(b"PBSZ 0\r\n")
        >> FromServer(b"200 pbsz\r\n")
        << fact(
            "reply", code=200, text="pbsz", command="PBSZ", arg="0", state=["before_login", "tls"]
        )
        << ToServer(b"PROT P\r\n")
        >> FromServer(b"200 prot\r\n")
        << fact(
            "reply", code=200, text="prot", command="PROT", arg="P", state=["before_login", "tls"]
        )
        << fact("command", verb="USER", arg="u")
        << ToServer(b"USER u\r\n")
        >> FromServer(b"331 pw\r\n")
        << fact(
            "reply",
            code=331,
            text="pw",
            command="USER",
            arg="u",
            state=["before_login", "tls", "prot_p"],
        )
        << ToClient(b"331 pw\r\n")
    )


def test_the_clients_auth_tls_is_answered_by_the_proxy() -> None:
    """--client-tls explicit with a plain server: the proxy answers AUTH, PBSZ and PROT itself."""
    pb = greeted(client_tls="explicit", upstream_tls="off")
    assert (
        pb
        >> FromClient(b"AUTH TLS\r\n")
        << fact("command", verb="AUTH", arg="TLS")
        << fact("proxy.reply", code=234, text="AUTH TLS successful.", command="AUTH")
        << ToClient(b"234 AUTH TLS successful.\r\n")
        << StartTLS(side="client")
        >> TLSEstablished(side="client", facts={"version": "TLSv1.3"}, pipe=None)
        << fact("tls.established", side="client", channel="control", pipe=None, version="TLSv1.3")
        >> FromClient(b"PBSZ 0\r\nPROT P\r\n")
        << fact("command", verb="PBSZ", arg="0")
        << fact("proxy.reply", code=200, text="PBSZ=0", command="PBSZ")
        << ToClient(b"200 PBSZ=0\r\n")
        << fact("command", verb="PROT", arg="P")
        << fact("proxy.reply", code=200, text="Protection level set to P.", command="PROT")
        << ToClient(b"200 Protection level set to P.\r\n")
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=True)
    )


def test_a_mirrored_auth_tls_starts_tls_on_both_sides() -> None:
    """--upstream-tls auto: the client's AUTH TLS goes to the server; its 234 starts TLS on both."""
    pb = greeted(client_tls="explicit")
    assert (
        pb
        >> FromClient(b"AUTH TLS\r\n")
        << fact("command", verb="AUTH", arg="TLS")
        << ToServer(b"AUTH TLS\r\n")
        >> FromServer(b"234 ok\r\n")
        << fact("reply", code=234, text="ok", command="AUTH", arg="TLS", state=["before_login"])
        << ToClient(b"234 ok\r\n")
        << StartTLS(side="client")
        << StartTLS(side="server")
        >> FromClient(b"PBSZ 0\r\n")
        << fact("command", verb="PBSZ", arg="0")
        << ToServer(b"PBSZ 0\r\n")
        >> FromServer(b"200 ok\r\n")
        << fact(
            "reply", code=200, text="ok", command="PBSZ", arg="0", state=["before_login", "tls"]
        )
        << ToClient(b"200 ok\r\n")
        >> FromClient(b"PROT P\r\n")
        << fact("command", verb="PROT", arg="P")
        << ToServer(b"PROT P\r\n")
        >> FromServer(b"200 ok\r\n")
        << fact(
            "reply", code=200, text="ok", command="PROT", arg="P", state=["before_login", "tls"]
        )
        << ToClient(b"200 ok\r\n")
        >> FromClient(b"PASV\r\n")
        << fact("command", verb="PASV", arg="")
        << ListenData(pipe=1, side="client", host="127.0.0.1", allow_host="127.0.0.1", tls=True)
    )


def test_pass_through_goes_blind_on_234() -> None:
    """--tls-passthrough: AUTH TLS relayed; on 234 the proxy goes blind."""
    pb = greeted(tls_passthrough=True)
    assert (
        pb
        >> FromClient(b"AUTH TLS\r\n")
        << fact("command", verb="AUTH", arg="TLS")
        << ToServer(b"AUTH TLS\r\n")
        >> FromServer(b"234 ok\r\n")
        << fact("reply", code=234, text="ok", command="AUTH", arg="TLS", state=["before_login"])
        << ToClient(b"234 ok\r\n")
        << fact("tls.blind", reason="TLS pass-through: the proxy relays without reading")
        << GoBlind()
        >> BlindTraffic(to_client=10, to_server=20)
        << fact("tls.blind_traffic", to_client=10, to_server=20)
    )


def test_an_unreachable_server_gets_the_client_421() -> None:
    """The control connection to the server fails: 421 and the session closes."""
    pb = Playbook()
    assert (
        pb
        >> Start()
        << fact(
            "session.open",
            client="127.0.0.1:50000",
            upstream="198.51.100.7:21",
            upstream_mode="same",
        )
        >> UpstreamFailed(kind="refused", detail="Connection refused")
        << fact(
            "upstream.failed",
            kind="refused",
            detail="Connection refused",
            upstream="198.51.100.7:21",
        )
        << fact(
            "proxy.reply",
            code=421,
            text="ftpdiag: cannot reach the server 198.51.100.7:21: Connection refused.",
            command=None,
        )
        << ToClient(
            b"421 ftpdiag: cannot reach the server 198.51.100.7:21: Connection refused.\r\n"
        )
        << fact(
            "session.close", reason="upstream refused", commands=0, replies=0, transfers=0, bytes=0
        )
        << CloseControl(reason="upstream refused")
    )


def test_shutdown_closes_with_421() -> None:
    """The proxy stopping: the client gets 421 and the session.close fact."""
    pb = greeted()
    assert (
        pb
        >> Shutdown(reason="proxy shutdown")
        << fact("proxy.reply", code=421, text="ftpdiag: the proxy is shutting down.", command=None)
        << ToClient(b"421 ftpdiag: the proxy is shutting down.\r\n")
        << fact(
            "session.close", reason="proxy shutdown", commands=0, replies=1, transfers=0, bytes=0
        )
        << CloseControl(reason="proxy shutdown")
    )


def test_a_server_close_while_a_command_waits_tells_the_client() -> None:
    """The server closes with a command unanswered: the client gets 421."""
    pb = greeted()
    assert (
        pb
        >> FromClient(b"NOOP\r\n")
        << fact("command", verb="NOOP", arg="")
        << ToServer(b"NOOP\r\n")
        >> ControlClosed(side="server", clean=False, detail="reset")
        << fact(
            "control.closed",
            side="server",
            clean=False,
            detail="reset",
            awaiting="NOOP",
            transfer_open=False,
        )
        << fact(
            "proxy.reply",
            code=421,
            text="ftpdiag: the server closed the control connection.",
            command=None,
        )
        << ToClient(b"421 ftpdiag: the server closed the control connection.\r\n")
        << fact("session.close", reason="server reset", commands=1, replies=1, transfers=0, bytes=0)
        << CloseControl(reason="server reset")
    )


def test_a_wrong_transcript_fails_with_a_diff() -> None:
    """The playbook itself: a written output the session does not give fails, with a diff."""
    pb = greeted() >> FromClient(b"NOOP\r\n") << ToServer(b"NOOP\r\n")
    with pytest.raises(AssertionError, match=r"(?s)--- written.*\+<< Fact\(event='command'"):
        bool(pb)


def test_an_undeclared_fact_fails() -> None:
    """The playbook holds every fact to core/facts.py: an unknown name fails the test."""
    pb = greeted()
    pb.session.out.fact("no.such.fact", x=1)
    with pytest.raises(AssertionError, match="'no\\.such\\.fact' is not in"):
        bool(pb >> FromClient(b"NOOP\r\n"))
