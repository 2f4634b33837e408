"""Fault injection: every phase of a session × reset, silent close and stall on either side.

For each case the proxy must log the side and the phase (a ``session.close`` with a reason,
and the diagnosis when one is defined), the client must see a clean outcome (an error reply
or a closed connection, never a hang), the proxy must free everything it held for the
session, and a concurrent healthy session on the same proxy must go on transferring
checksum-verified files throughout.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from ftpdiag.proxy.data import DataTimeouts
from tests.robustness.conftest import (
    ENDLESS_NAME,
    FAULTS,
    MID_TRANSFER,
    PHASES,
    TIMEOUT,
    HealthySession,
    Outcome,
    RawClient,
    Rig,
    Script,
    ScriptedUpstream,
    assert_no_leftovers,
    log_summary,
    observe,
    observed_if_failing,
    own_sockets,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

IDLE = 0.5
OPTIONS: dict[str, Any] = {
    "greeting_timeout": 0.5,
    "idle_timeout": IDLE,
    "completion_timeout": 0.5,
    "data": DataTimeouts(connect=0.5, drain=0.5),
}
UPLOAD = bytes(range(256)) * 512  # 128 KiB

IDLE_NEVER_STARTS = (
    "ftpdiag/core/session.py: the idle timer is only (re)started in Session._on_client_bytes, "
    "so a client that connects and never sends a byte is never timed out: with "
    "--idle-timeout the session, its upstream connection and its --max-sessions slot are "
    "held forever"
)


def case_id(side: str, fault: str, phase: str) -> str:
    return f"{side}-{fault}-{phase}"


# The session.close reasons each case may log (the side, and for timeouts which one).
def expected_reasons(side: str, fault: str, phase: str) -> set[str]:
    if fault == "stall":
        if side == "server" and phase == "greeting":
            return {"no greeting"}
        if side == "client" and phase == "quit":
            return {"server closed"}  # the upstream answers 221 and hangs up: nothing to wait for
        if side == "server" and phase in ("login", "quit"):
            return {"server silent"}  # a command awaits the server's reply: it is named
        return {"idle timeout"}
    if side == "server" and fault == "rst" and phase == "greeting":
        # A RST racing the end of the TCP handshake fails the connect itself (the 421 then
        # reads "cannot connect (... Connection reset by peer)").
        return {"server reset", "upstream unreachable"}
    if side == "server":
        return {"server reset" if fault == "rst" else "server closed"}
    return {"client reset" if fault == "rst" else "client closed"}


MID = ("download", "upload", "abor")
FAULT_NAMES = {"rst": "RST", "close": "silent close", "stall": "stall"}
#: Cases with a defined diagnosis: at least one of these rules must fire.
DIAGNOSED: dict[tuple[str, str, str], set[str]] = {
    ("server", "stall", "greeting"): {"greeting.missing"},
    # The client's own ABOR ended the transfer: a stop on purpose, not an abort to explain.
    ("client", "stall", "abor"): {"transfer.client_stopped"},
    **{
        ("server", fault, phase): {"control.dropped_during_transfer", "transfer.interrupted"}
        for fault in ("rst", "close")
        for phase in MID
    },
    # The client's ABOR may end the transfer before the server's fault reaches the proxy.
    **{
        ("server", fault, "abor"): {
            "control.dropped_during_transfer",
            "transfer.interrupted",
            "transfer.client_stopped",
        }
        for fault in ("rst", "close")
    },
}


def drive(victim: RawClient, phase: str, upto_fault: bool) -> None:
    """Take the victim to the instant of the fault in ``phase``."""
    if phase == "greeting":
        return
    if phase == "login":
        assert victim.reply().startswith(b"220")
        victim.send("USER victim")
        if not upto_fault:  # a client fault comes after the 331
            assert victim.reply().startswith(b"331")
        return
    victim.login()
    if phase == "quit":
        victim.send("QUIT")
        return
    assert victim.cmd("TYPE I").startswith(b"200")
    victim.pasv()
    if phase == "pasv":
        return
    victim.connect_data()
    if phase == "upload":
        assert victim.cmd("STOR victim.bin").startswith(b"150")
        assert victim.data is not None
        victim.data.sendall(UPLOAD)
        return
    assert victim.cmd(f"RETR {ENDLESS_NAME}").startswith(b"150")
    victim.read_data(MID_TRANSFER // 2)
    if phase == "abor":
        victim.send("ABOR")


def carry_on(victim: RawClient, phase: str) -> None:
    """After an upstream fault the client carries on as a real one would (best effort)."""
    with contextlib.suppress(OSError, AssertionError):
        if phase == "pasv":
            victim.connect_data()
            victim.send(f"RETR {ENDLESS_NAME}")


def client_fault(victim: RawClient, fault: str) -> None:
    if fault == "rst":
        victim.rst()
    elif fault == "close":
        victim.silent_close()
    # stall: stop reading and writing, keep everything open


CASES = [
    pytest.param(
        side,
        fault,
        phase,
        id=case_id(side, fault, phase),
    )
    for side in ("server", "client")
    for fault in FAULTS
    for phase in PHASES
]


@pytest.mark.parametrize(("side", "fault", "phase"), CASES)
def test_fault_matrix(
    side: str, fault: str, phase: str, upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """A fault on one side in one phase ends that session cleanly and visibly, frees its
    resources and leaves a concurrent healthy session transferring."""
    rig: Rig = make_rig(upstream.address, **OPTIONS)
    healthy = HealthySession(rig.address, upstream)
    healthy.start()
    healthy.wait_completed()

    if side == "server":
        script = upstream.arm(Script(phase=phase, fault=fault))
    else:
        script = upstream.arm(Script(greeting_delay=0.3 if phase == "greeting" else 0.0))
    victim = RawClient(rig.address)
    try:
        sid = rig.session_of(victim.local)
        drive(victim, phase, upto_fault=side == "server")
        if side == "server":
            if phase in Script.MANUAL:
                script.go.set()
            assert script.fired.wait(TIMEOUT), "the upstream fault never fired"
            fired_at = script.fired_at
            carry_on(victim, phase)
            outcome = victim.outcome(timeout=TIMEOUT)
        else:
            fired_at = time.monotonic()
            client_fault(victim, fault)
            outcome = Outcome([], "gone")
            if fault == "stall":
                try:
                    rig.close_of(sid, timeout=IDLE + 2.0)
                except AssertionError:
                    observe("Faults", "client stall", phase, "connection held open",
                            "nothing: no timeout starts (bug)")
                    raise
                outcome = victim.outcome(timeout=TIMEOUT)

        close = rig.close_of(sid)
        events = rig.events_of(sid)
        observe(
            "Faults",
            f"{side} {FAULT_NAMES[fault]}",
            phase,
            outcome.summary if side == "server" or fault == "stall" else "— (gone)",
            log_summary(events),
        )
        assert close["reason"] in expected_reasons(side, fault, phase), close
        if side == "server" or fault == "stall":
            assert outcome.end in ("closed", "reset"), outcome
            last = outcome.lines[-1] if outcome.lines else b""
            clean_quit = phase == "quit" and last[:3] == b"221"
            assert not outcome.lines or last[:1] == b"4" or clean_quit, outcome
        rules = {e["rule"] for e in events if e["event"] == "diagnosis"}
        if (side, fault, phase) in DIAGNOSED:
            assert rules & DIAGNOSED[side, fault, phase], rules
        if close["reason"] == "upstream unreachable":
            assert "upstream.unreachable" in rules
        assert not rig.internal_errors()

        # the healthy session went on during the fault
        healthy.wait_completed(after=fired_at)
        assert_no_leftovers(rig, sid)
    finally:
        victim.close()
        upstream.release()
    healthy.finish()
    wait_until(lambda: not rig.live(), TIMEOUT, "every session forgotten")
    listening = {s.local for s in own_sockets() if s.listening}
    for e in rig.events:
        if e["event"] == "data.listen":
            host, port = e["address"].rsplit(":", 1)
            assert (host, int(port)) not in listening, f"data listener {e['address']} left open"


# ---- beyond the matrix ------------------------------------------------------------------------
SILENT_SIDE_UNNAMED = (
    "ftpdiag/core/session.py Session._on_idle_timer: when the idle timer fires while a "
    "command is still awaiting the server's reply, the proxy logs control.idle_timeout "
    "{seconds} and closes with reason 'idle timeout' and answers '421 no activity' - exactly "
    "as for an idle client; nothing says the *server* went silent on USER/RETR, and no "
    "diagnosis is made (checks.timing only diagnoses a 421 sent by the server)"
)


@pytest.mark.parametrize("phase", ["login", "download"])
def test_server_stall_is_attributed_to_the_server(
    phase: str, upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """A server that stops answering a pending command is named as the silent side."""
    rig: Rig = make_rig(upstream.address, **OPTIONS)
    script = upstream.arm(Script(phase=phase, fault="stall"))
    victim = RawClient(rig.address)
    try:
        sid = rig.session_of(victim.local)
        drive(victim, phase, upto_fault=True)
        script.go.set()
        outcome = victim.outcome()
        assert outcome.lines and outcome.lines[-1].startswith(b"421")
        rig.close_of(sid)
        if phase == "login":  # the server owes a reply: it is named as the silent side
            silent = rig.handle.wait_for("control.server_silent", session=sid)
            assert silent["awaiting"] == "USER"
            assert any(
                d["rule"] == "control.server_silent" and "server" in d["title"].lower()
                for d in rig.events_of(sid) if d["event"] == "diagnosis"
            )
        else:  # mid-download nothing moves on either connection: the stall is what is known
            timeout = rig.handle.wait_for("control.idle_timeout", session=sid)
            assert timeout["awaiting"] == "RETR" and timeout["transfer_stalled"]
    finally:
        victim.close()
        upstream.release()


IDLE_KILLS_TRANSFERS = (
    "ftpdiag/core/session.py: the 'idle' timer is restarted only by client control bytes "
    "(Session._on_client_bytes) and Session._on_idle_timer closes the session "
    "unconditionally, so with --idle-timeout N every download or upload that lasts longer "
    "than N seconds is cut with 421 while data is flowing"
)


def test_idle_timeout_spares_a_flowing_transfer(
    upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """A download whose data keeps flowing outlives the control idle timeout."""
    rig: Rig = make_rig(upstream.address, idle_timeout=IDLE)
    victim = RawClient(rig.address)
    try:
        victim.login()
        assert victim.cmd("TYPE I").startswith(b"200")
        victim.pasv()
        victim.connect_data()
        assert victim.cmd(f"RETR {ENDLESS_NAME}").startswith(b"150")
        started = time.monotonic()
        with observed_if_failing(
            "Faults", "download longer than `--idle-timeout` 0.5 s, data flowing", "download",
            "421 (no activity) after 0.5 s, data connection reset",
            "`control.idle_timeout`; `session.close` (idle timeout)",
        ):
            read_for(victim, started, 4 * IDLE)
        assert not [e for e in rig.events if e["event"] == "control.idle_timeout"]
    finally:
        victim.close()


def read_for(victim: RawClient, started: float, seconds: float) -> None:
    """Keep reading the victim's data connection until ``seconds`` after ``started``."""
    while time.monotonic() - started < seconds:
        try:
            victim.read_data(victim.received_data + 1)
        except (AssertionError, OSError):
            raise AssertionError(
                f"transfer cut after {time.monotonic() - started:.2f} s while data flowed"
            ) from None


LOSE_CONNECTION_LEAK = (
    "ftpdiag/proxy/control.py ClientControl._teardown: the client transport is closed with "
    "loseConnection(), which waits until Twisted's write buffer is flushed; a client that "
    "stopped reading (with more queued than the kernel buffers hold) is never closed: after "
    "session.close and factory.forget() its socket and every queued byte stay in the proxy "
    "forever (the control channel has no write-side bound either)"
)


def test_stalled_reader_is_released_after_close(
    upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """A client that pipelines commands and never reads the replies is fully released once
    its session is closed (idle timeout)."""
    help_reply = b"".join(b"214-help %06d %s\r\n" % (i, b"x" * 100) for i in range(600))
    upstream.arm(Script(replies={"HELP": help_reply + b"214 end\r\n"}))
    rig: Rig = make_rig(upstream.address, idle_timeout=IDLE)
    victim = RawClient(rig.address)
    try:
        sid = rig.session_of(victim.local)
        victim.login()
        victim.sock.sendall(b"HELP\r\n" * 200)  # ~15 MB of replies, never read
        assert rig.close_of(sid, timeout=IDLE + TIMEOUT)["reason"] == "idle timeout"
        observe("Faults", "client stops reading (15 MB of replies queued)", "logged in",
                "nothing (not reading)", log_summary(rig.events_of(sid)) + "; socket released")
        assert_no_leftovers(rig, sid)
    finally:
        victim.close()


STALE_BYTES = (
    "ftpdiag/proxy/control.py: ClientControl.tally_pipes() (the live byte counts of the data "
    "pipes) is fed only from connectionLost and shutdown; a close the session decides itself - "
    "Session._on_idle_timer here, likewise 'server line too long' / 'server reply too long' - "
    "ends the open transfers with the counts of the last 5-s DataProgress, so transfer.end and "
    "session.close log bytes=0 although hundreds of KB moved"
)


@pytest.mark.parametrize(
    "how",
    [
        "rst",
        "close",
        "shutdown",
        "idle-timeout",
    ],
)
def test_bytes_moved_survive_a_control_drop(
    how: str, upstream: ScriptedUpstream, make_rig: Any
) -> None:
    """When the session ends mid-download (client RST or close, proxy shutdown, idle timeout
    of a stalled client), transfer.end still counts every byte that reached the client."""
    rig: Rig = make_rig(upstream.address, idle_timeout=IDLE)
    victim = RawClient(rig.address)
    try:
        sid = rig.session_of(victim.local)
        drive(victim, "download", upto_fault=False)
        victim.read_data(300_000)
        if how == "shutdown":
            rig.handle.stop()
        else:
            client_fault(victim, {"idle-timeout": "stall"}.get(how, how))
        rig.close_of(sid, timeout=IDLE + TIMEOUT)
        end = rig.handle.wait_for("transfer.end", session=sid)
        close = rig.close_of(sid)
        assert end["bytes"] >= victim.received_data, (end["bytes"], victim.received_data)
        assert close["bytes"] >= victim.received_data
    finally:
        victim.close()
