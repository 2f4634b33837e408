"""The gateway's part of the session, sans IO (``--route-by-user``): whole transcripts of the
greeting ftpdiag gives, the login that chooses the server, and the refusals (addresses are
data here: nothing dials them)."""

from __future__ import annotations

from ftpdiag.core.events import (
    GREETING_TIMER,
    CancelTimer,
    CloseControl,
    DialUpstream,
    FromClient,
    FromServer,
    HostResolved,
    ResolveHost,
    StartTimer,
    ToClient,
    ToServer,
    UpstreamConnected,
    UpstreamFailed,
)
from tests.playbook import Playbook, Start, fact

READY = b"220 ftpdiag gateway ready: log in as user@host[:port] to choose the server.\r\n"
ROUTED = ("127.0.0.1", 2121)
UP = UpstreamConnected(("127.0.0.1", 40000), ROUTED)


def gateway() -> Playbook:
    playbook = (
        Playbook(route_by_user=True)
        >> Start()
        << fact("session.open", upstream="chosen at login")
        << fact("proxy.reply", code=220)
        << ToClient(READY)
    )
    assert playbook
    return playbook


def test_the_login_chooses_the_server_and_the_greeting_stays_with_ftpdiag() -> None:
    """ftpdiag greets; niceties are answered locally; ``USER bob@127.0.0.1:2121`` dials that
    server, logs in there as ``bob``; the server's 220 is logged, not relayed."""
    assert (
        gateway()
        >> FromClient(b"FEAT\r\n")
        << fact("command", verb="FEAT")
        << fact("proxy.reply", code=211)
        << ToClient(b"211 No features before the server is chosen (log in as user@host).\r\n")
        >> FromClient(b"USER bob@127.0.0.1:2121\r\n")
        << fact("command", verb="USER", arg="bob@127.0.0.1:2121")
        << fact("route.selected", user="bob", host="127.0.0.1", port=2121)
        << DialUpstream(ROUTED)
        >> UP
        << fact("upstream.connect", peer="127.0.0.1:2121")
        << StartTimer(GREETING_TIMER, 10.0)
        << ToServer(b"USER bob\r\n")
        >> FromServer(b"220 real server\r\n")
        << fact("reply", code=220, state=["greeting", "before_login"])
        << CancelTimer(GREETING_TIMER)
        >> FromServer(b"331 Password\r\n")
        << fact("reply", code=331, command="USER", arg="bob")
        << ToClient(b"331 Password\r\n")
    )


def test_a_name_is_resolved_then_held_to_the_policy() -> None:
    """A host name is resolved by the glue first; an address outside the allowed networks
    (by default loopback and private ranges) is refused with 530, and a new USER may follow."""
    assert (
        gateway()
        >> FromClient(b"USER bob@ftp.example.test\r\n")
        << fact("command", verb="USER")
        << ResolveHost("ftp.example.test")
        >> HostResolved("ftp.example.test", "198.51.100.7")
        << fact("route.refused", kind="not allowed")
        << fact("proxy.reply", code=530)
        << ToClient(
            b"530 ftpdiag gateway: destination ftp.example.test (198.51.100.7) is not allowed"
            b" (add --allow-upstream 198.51.100.7 or a CIDR).\r\n"
        )
        >> FromClient(b"USER bob@10.0.0.5\r\n")
        << fact("command", verb="USER")
        << fact("route.selected", host="10.0.0.5", port=21)
        << DialUpstream(("10.0.0.5", 21))
    )


def test_lines_wait_while_the_server_is_chosen_and_failures_are_530s() -> None:
    """A line sent while the gateway resolves waits; a failed look-up is a 530 with the
    reason, after which the waiting line is answered."""
    assert (
        gateway()
        >> FromClient(b"USER bob@nowhere.test\r\nNOOP\r\n")
        << fact("command", verb="USER")
        << ResolveHost("nowhere.test")
        >> UpstreamFailed("dns", "the host name could not be resolved")
        << fact("upstream.failed", kind="dns", upstream="nowhere.test:21")
        << fact("route.refused", kind="dns")
        << fact("proxy.reply", code=530)
        << ToClient(
            b"530 ftpdiag gateway: cannot reach nowhere.test:21: the host name could not be"
            b" resolved.\r\n"
        )
        << fact("command", verb="NOOP")
        << fact("proxy.reply", code=200)
        << ToClient(b"200 NOOP ok.\r\n")
    )


def test_a_malformed_login_and_quit_before_routing() -> None:
    """``USER bob`` names no server: 530 saying how to log in; QUIT is answered and closes."""
    playbook = (
        gateway()
        >> FromClient(b"USER bob\r\n")
        << fact("command", verb="USER")
        << fact("route.refused", kind="malformed")
        << fact("proxy.reply", code=530)
        << ToClient(b"530 ftpdiag gateway: log in as user@host[:port] to choose the server.\r\n")
        >> FromClient(b"QUIT\r\n")
        << fact("command", verb="QUIT")
        << fact("proxy.reply", code=221)
        << ToClient(b"221 Goodbye (ftpdiag gateway).\r\n")
        << fact("session.close", reason="client quit before login")
        << CloseControl("client quit before login")
    )
    assert playbook
    assert playbook.session.closed
