"""One FTP session seen in a capture, turned into the proxy's facts.

The control bytes go through the core's own framing and reply assembly (``core.framing``,
``core.messages``) and its address codecs (``core.addresses``), so a capture and the live
proxy read FTP the same way; transfers are the core's ``Transfer`` records, so
``transfer.start``/``transfer.end`` carry the same fields. What differs is only where the
facts about data connections come from: the TCP packets of the connection that the
227/229 reply or the PORT/EPRT command announced (``link.py`` finds it).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ftpdiag.core import addresses as addr
from ftpdiag.core.facts import level_of
from ftpdiag.core.framing import LineSplitter, OverlongLine, line_text
from ftpdiag.core.messages import (
    Command,
    MalformedReply,
    OversizedReply,
    Reply,
    ReplyAssembler,
    parse_command,
)
from ftpdiag.core.transfers import TRANSFER_VERBS, Mode, Transfer, TransferPhase
from ftpdiag.rules.sequences import allowed_replies

Endpoint = tuple[str, int]
# Other protocols whose servers also greet with a three-digit code (RFC 5321, RFC 3977).
_NOT_FTP_GREETING = re.compile(r"\b(E?SMTP|NNTP|LMTP)\b", re.I)
_NOT_FTP_VERBS = frozenset({"EHLO", "HELO", "LHLO", "MAIL", "ARTICLE", "GROUP"})
_REPLY_START = re.compile(rb"\d{3}[ \-\r\n]")
_VERB_START = re.compile(rb"([A-Z]{3,4})(?: |\r?\n)")
_LAST_SECOND = 253402300799.0  # 9999-12-31T23:59:59Z
PASSIVE_VERBS = frozenset({"PASV", "EPSV"})
PROTECTED_VERBS = frozenset({"ENC", "MIC", "CONF"})
ACTIVE_VERBS = frozenset({"PORT", "EPRT"})
Expect = Callable[["CaptureSession", str, int, "DataSetup"], None]
"""Register an expected data connection to (host, port) for a session's set-up."""


@dataclass(slots=True)
class DataSetup:
    """A data connection announced by PASV/EPSV (the server's port) or PORT/EPRT (the
    client's); ``conn`` is the TCP connection that came for it, once one did."""

    pipe: int
    verb: str
    mode: Mode
    conn: Any = None
    transfer: Transfer | None = None
    failed: bool = False  # its data.failed is out


@dataclass(slots=True)
class Pending:
    """A command not yet answered by a final reply."""

    command: Command | None
    sent_at: float
    purpose: str = "relay"
    setup: DataSetup | None = None
    preliminary: bool = False


@dataclass(slots=True)
class _Counts:
    commands: int = 0
    replies: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    transfers: int = 0
    bytes: int = 0


def stamp(ts: float) -> str:
    """A capture timestamp as the log's ISO 8601 UTC time; a damaged record's impossible
    time is clamped to the range ISO 8601 years can carry."""
    ts = min(max(ts, 0.0), _LAST_SECOND)
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class CaptureSession:
    """Facts of one control connection (and its data connections), in time order."""

    def __init__(
        self,
        sid: str,
        client: Endpoint,
        server: Endpoint,
        ts: float,
        source: str,
        expect: Expect,
        *,
        from_start: bool,
        implicit_tls: bool = False,
    ) -> None:
        self.sid = sid
        self.client, self.server = client, server
        self.expect = expect
        self.records: list[dict[str, Any]] = []
        self.started = ts
        self.closed = False
        # A capture that starts mid-session most likely starts after the login.
        self.logged_in = not from_start
        self.from_start = from_start
        self.type = "A"
        self.rest = 0
        self.tls = implicit_tls
        self.blind = False
        self.blind_bytes = {"client": 0, "server": 0}
        self._client_lines = LineSplitter()
        self._server_lines = LineSplitter()
        self._assembler = ReplyAssembler()
        # A capture that starts mid-session has no greeting to wait for.
        self._pending: deque[Pending] = deque([Pending(None, ts, "greeting")] if from_start else [])
        self._setup: DataSetup | None = None
        self._transfers: dict[int, Transfer] = {}
        self._setups: dict[int, DataSetup] = {}
        self._next_pipe = 1
        self._last_mode: Mode | None = None
        self._last_command_at = ts
        self._counts = _Counts()
        self._control_closed: str | None = None
        self._cut: set[str] = set()  # sides whose current line a gap cut
        #: Set when the conversation turns out to be SMTP, NNTP… (they too greet with 2xx).
        self.not_ftp = False
        fields: dict[str, Any] = {"input": source}
        if implicit_tls:
            fields["tls"] = "implicit"
        self._fact(
            ts,
            "session.open",
            client=addr.show(client),
            upstream=addr.show(server),
            upstream_mode="same",
            **fields,
        )
        if implicit_tls:
            self._go_blind(ts, "implicit FTPS: TLS from the first byte, on port 990")

    # ---- output --------------------------------------------------------------------
    def _fact(self, ts: float, event: str, /, **fields: Any) -> None:
        level = level_of(event, fields)  # as the proxy's log has it: core/facts.py says
        self.records.append(
            {"event": event, "timestamp": stamp(ts), "level": level, "session": self.sid, **fields}
        )

    def _go_blind(self, ts: float, reason: str) -> None:
        self.blind = True
        self._fact(ts, "tls.blind", reason=reason)

    # ---- control bytes -------------------------------------------------------------
    def _after_gap(self, side: str, data: bytes) -> bytes:
        """What follows a gap up to the next line end is the tail of a line whose head is
        lost, unless it starts a line itself (a reply code; an upper-case command of the
        RFC 959 table): the tail is dropped, so that the end of ``PASS secret`` is never read
        as a command."""
        if side not in self._cut:
            return data
        end = data.find(b"\n")
        if end < 0 and len(data) < 8:
            return b""  # too short to tell: wait for more
        self._cut.discard(side)
        first = data[: end + 1] if end >= 0 else data
        if side == "server" and _REPLY_START.match(first):
            return data
        verb = _VERB_START.match(first)
        if side == "client" and verb and allowed_replies(verb.group(1).decode()) is not None:
            return data
        return data[end + 1 :] if end >= 0 else b""

    def client_bytes(self, ts: float, data: bytes) -> None:
        if self.blind:
            self.blind_bytes["server"] += len(data)
            return
        for item in self._client_lines.feed(self._after_gap("client", data)):
            if isinstance(item, OverlongLine):
                command = parse_command(item.head)  # PASS/ACCT: the head shows no secret
                head = f"{command.verb} {command.loggable_arg}"[:40]
                self._fact(ts, "protocol.line_too_long", side="client", limit=item.limit, head=head)
            else:
                self._on_command(ts, parse_command(item))
            if self.blind:
                return

    def server_bytes(self, ts: float, data: bytes) -> None:
        if self.blind:
            self.blind_bytes["client"] += len(data)
            return
        for item in self._server_lines.feed(self._after_gap("server", data)):
            if isinstance(item, OverlongLine):
                head = line_text(item.head)[:40]
                self._fact(ts, "protocol.line_too_long", side="server", limit=item.limit, head=head)
                continue
            result = self._assembler.feed(item)
            if isinstance(result, MalformedReply):
                self._fact(ts, "protocol.malformed_reply", text=result.text[:200])
            elif isinstance(result, OversizedReply):
                self._fact(ts, "protocol.reply_too_long", code=result.code, limit=result.limit)
            elif isinstance(result, Reply):
                self._on_reply(ts, result)
            if self.blind:
                return

    def gap(self, ts: float, side: str, size: int) -> None:
        """Bytes of the control connection missing from the capture: the line they cut is
        lost, and the parser starts afresh after them."""
        self._fact(ts, "capture.gap", side=side, channel="control", bytes=size)
        self._cut.add(side)
        if side == "client":
            self._client_lines = LineSplitter()
        else:
            self._server_lines = LineSplitter()
            self._assembler = ReplyAssembler()

    # ---- commands ------------------------------------------------------------------
    def _on_command(self, ts: float, command: Command) -> None:
        if self._counts.commands == 0 and command.verb in _NOT_FTP_VERBS:
            self.not_ftp = True
        self._counts.commands += 1
        self._last_command_at = ts
        self._fact(ts, "command", verb=command.verb, arg=command.loggable_arg)
        verb = command.verb
        pending = Pending(command, ts)
        if verb in PASSIVE_VERBS and command.arg.strip().upper() != "ALL":
            pending.purpose, pending.setup = "passive", self._new_setup(verb, "passive")
        elif verb in ACTIVE_VERBS:
            pending.purpose = "active"
            pending.setup = self._active(ts, command)
        elif verb in TRANSFER_VERBS:
            self._transfer_command(ts, command, pending)
        elif verb == "AUTH":
            pending.purpose = "auth"
        elif verb == "TYPE" and command.arg:
            self.type = command.arg.strip()[:1].upper()
        elif verb == "REST":
            self.rest = int(command.arg) if command.arg.strip().isdigit() else 0
        elif verb == "ABOR":
            for transfer in self._transfers.values():
                if not transfer.ended:
                    transfer.aborted_by = "client"
        elif verb in PROTECTED_VERBS:
            # RFC 2228 §3: after AUTH GSSAPI/ADAT the commands travel inside ENC/MIC/CONF,
            # and their replies inside 631-633: nothing readable from here on.
            self._go_blind(ts, f"{verb}: RFC 2228 protected commands after AUTH, unreadable")
            return
        self._pending.append(pending)

    def _new_setup(self, verb: str, mode: Mode) -> DataSetup:
        if self._setup is not None and self._setup.transfer is None:
            self._setups.pop(self._setup.pipe, None)  # replaced before any transfer used it
        setup = DataSetup(self._next_pipe, verb, mode)
        self._next_pipe += 1
        self._setup = self._setups[setup.pipe] = setup
        return setup

    def _active(self, ts: float, command: Command) -> DataSetup | None:
        try:
            if command.verb == "PORT":
                host, port = addr.parse_port_arg(command.arg)
            else:
                host, port = addr.parse_eprt_arg(command.arg)
        except addr.AddressError as exc:
            self._fact(
                ts,
                "protocol.bad_address",
                side="client",
                verb=command.verb,
                arg=command.arg,
                error=str(exc),
            )
            return None
        if not addr.same_host(host, self.client[0]):
            # RFC 2577 §3: a data address other than the client's own is a bounce attempt.
            self._fact(
                ts,
                "security.bounce",
                verb=command.verb,
                requested=addr.show((host, port)),
                client=self.client[0],
            )
        setup = self._new_setup(command.verb, "active")
        self.expect(self, host, port, setup)
        return setup

    def _transfer_command(self, ts: float, command: Command, pending: Pending) -> None:
        setup, self._setup = self._setup, None
        if setup is None:
            return
        transfer = Transfer(
            pipe=setup.pipe,
            verb=command.verb,
            path=command.arg,
            client_mode=setup.mode,
            server_mode=setup.mode,
            type=self.type,
            rest=self.rest,
            started=ts,
        )
        self.rest = 0
        self._last_mode = setup.mode
        setup.transfer = transfer
        self._transfers[setup.pipe] = transfer
        self._counts.transfers += 1
        pending.purpose, pending.setup = "transfer", setup
        self._fact(ts, "transfer.start", **transfer.start_fields())

    # ---- replies -------------------------------------------------------------------
    def _state_tags(self, pending: Pending | None) -> list[str]:
        tags = ["greeting"] if pending is not None and pending.purpose == "greeting" else []
        tags.append("logged_in" if self.logged_in else "before_login")
        if self.tls:
            tags.append("tls")
        transfer = pending.setup.transfer if pending and pending.setup else None
        mode = transfer.client_mode if transfer else self._last_mode
        if mode is not None:
            tags.append(mode)
        if self._data_open():
            tags.append("transfer")
        verb = pending.command.verb if pending and pending.command else None
        if (transfer is not None and transfer.aborted_by == "client") or verb == "ABOR":
            tags.append("abort")
        return tags

    def _data_open(self) -> bool:
        return any(s.conn is not None and not s.conn.done for s in self._setups.values())

    def _on_reply(self, ts: float, reply: Reply) -> None:
        pending = self._pending[0] if self._pending else None
        if pending is not None and not reply.preliminary:
            self._pending.popleft()
        setup = pending.setup if pending else None
        if (
            pending is not None
            and pending.purpose == "transfer"
            and setup is not None
            and not reply.preliminary
            and reply.code == 425
            and (setup.conn is None or not setup.conn.opened)
            and not pending.preliminary
            and not setup.failed
        ):
            self._data_failed(ts, setup)
        self._counts.replies += 1
        klass = f"{reply.code // 100}xx"
        self._counts.by_class[klass] = self._counts.by_class.get(klass, 0) + 1
        command = pending.command if pending else None
        self._fact(
            ts,
            "reply",
            code=reply.code,
            text=reply.text,
            command=command.verb if command else None,
            arg=command.loggable_arg if command else None,
            pipe=pending.setup.pipe if pending and pending.setup else None,
            latency_ms=round((ts - pending.sent_at) * 1000, 2) if pending else None,
            state=self._state_tags(pending),
            # Before the first command of a capture that joined mid-session, a reply answers
            # a command sent before the capture began: nothing unsolicited about it.
            unsolicited=pending is None and (self.from_start or self._counts.commands > 0),
            mismatched_codes=list(reply.mismatched_codes),
            idle_ms=round((ts - self._last_command_at) * 1000, 1),
        )
        if pending is None:
            return
        if pending.purpose == "greeting" and _NOT_FTP_GREETING.search(reply.text):
            self.not_ftp = True
        if reply.preliminary:
            pending.preliminary = True
            return
        if reply.code in (230, 232):
            self.logged_in = True
        elif command is not None and command.verb == "REIN" and reply.code == 220:
            self.logged_in = False
        if pending.purpose == "passive" and setup is not None:
            self._passive_reply(ts, setup, reply)
        elif pending.purpose == "transfer" and setup is not None and setup.transfer:
            setup.transfer.final_code = reply.code
            if setup.conn is None or setup.conn.done:
                self._end_transfer(ts, setup, reply.code, unseen=pending.preliminary)
        elif pending.purpose == "auth" and reply.code == 234:
            self.tls = True
            arg = command.arg.strip().upper() if command else "TLS"
            self._go_blind(ts, f"AUTH {arg} accepted (234): only ciphertext from here on")

    def _passive_reply(self, ts: float, setup: DataSetup, reply: Reply) -> None:
        if reply.code not in (227, 229):
            self._setups.pop(setup.pipe, None)
            if self._setup is setup:
                self._setup = None
            return
        try:
            if reply.code == 227:
                host, port = addr.parse_pasv_reply(reply.text)
            else:
                host, port = self.server[0], addr.parse_epsv_reply(reply.text)
        except addr.AddressError as exc:
            self._fact(
                ts, "protocol.bad_address", side="server", code=reply.code, text=reply.text,
                error=str(exc),
            )  # fmt: skip
            return
        self._fact(
            ts,
            "data.passive",
            pipe=setup.pipe,
            code=reply.code,
            advertised=addr.show((host, port)),
            dialled=None,  # a capture shows no dialler's choice, only connections (below)
            control_peer=self.server[0],
        )
        self.expect(self, host, port, setup)
        if not addr.same_host(host, self.server[0]):
            self.expect(self, self.server[0], port, setup)  # clients that ignore a NAT address

    # ---- data connections ----------------------------------------------------------
    def data_connected(self, setup: DataSetup, conn: Any) -> bool:
        """A connection came for ``setup``; False when the set-up is no longer waiting."""
        if setup.conn is not None or setup.pipe not in self._setups or self.closed:
            return False
        setup.conn = conn
        return True

    def data_closed(self, ts: float, setup: DataSetup) -> None:
        transfer = setup.transfer
        if transfer is not None and transfer.final_code is not None:
            self._end_transfer(ts, setup, transfer.final_code)

    def data_refused(self, ts: float, setup: DataSetup) -> None:
        """The connection attempt for ``setup`` was answered by RST: nothing listened."""
        if not setup.failed and not self.closed:
            self._data_failed(ts, setup)

    def _data_failed(self, ts: float, setup: DataSetup) -> None:
        """No data connection came (a 425, or an attempt refused): which side failed."""
        setup.failed = True
        passive = setup.mode == "passive"
        attempt = None if setup.conn is None else setup.conn.refused_or_timeout
        kind = attempt or "timeout"
        # The side that should have accepted failed when someone tried; else nobody tried.
        if attempt is not None:
            side = "server" if passive else "client"
        else:
            side = "client" if passive else "server"
        self._fact(
            ts,
            "data.failed",
            pipe=setup.pipe,
            side=side,
            kind=kind,
            detail="no data connection in the capture"
            if attempt is None
            else f"the connection attempt was {attempt}",
            client_mode=setup.mode,
            server_mode=setup.mode,
        )

    def _end_transfer(
        self, ts: float, setup: DataSetup, outcome: int | str, unseen: bool = False
    ) -> None:
        transfer = setup.transfer
        if transfer is None or transfer.ended:
            return
        transfer.phase = TransferPhase.ENDED
        conn, missed = setup.conn, 0
        endpoints: dict[str, str | None] = {"data_from": None, "data_to": None}
        if conn is not None:
            endpoints = {"data_from": addr.show(conn.orig), "data_to": addr.show(conn.resp)}
            ends = conn.ends(setup.mode)
            transfer.to_client, transfer.to_server = ends["to_client"], ends["to_server"]
            transfer.client_end, transfer.server_end = ends["client_end"], ends["server_end"]
            transfer.first_closed = ends["first_closed"]
            transfer.duration = conn.duration
            missed = ends["missed"][0 if transfer.direction == "download" else 1]
        elif unseen:
            # The server said the connection opened (1xx): it is just not in the capture.
            transfer.client_end = transfer.server_end = "unseen"
        self._counts.bytes += transfer.bytes
        fields = transfer.end_fields(outcome)
        self._fact(ts, "transfer.end", **fields, missed_bytes=missed, **endpoints)
        self._setups.pop(setup.pipe, None)
        self._transfers.pop(setup.pipe, None)

    # ---- the end -------------------------------------------------------------------
    def control_closed(self, ts: float, side: str, clean: bool) -> None:
        if self._control_closed is not None or self.closed:
            return
        self._control_closed = f"{side} {'closed' if clean else 'reset'}"
        last = self._pending[0] if self._pending else None
        self._fact(
            ts,
            "control.closed",
            side=side,
            clean=clean,
            detail="",
            awaiting=last.command.verb if last and last.command else None,
            transfer_open=self._data_open(),
        )

    def close(self, ts: float, capture_ended: bool = False) -> None:
        """Both control ends are down (or the capture ended): close the session's facts."""
        if self.closed:
            return
        if self._assembler.in_progress:
            self._fact(ts, "protocol.reply_unterminated", **self._assembler.progress())
        for setup in list(self._setups.values()):
            transfer = setup.transfer
            if transfer is not None:
                final = transfer.final_code
                gone = "capture_ended" if capture_ended else "closed"
                self._end_transfer(ts, setup, final if final is not None else gone)
        if self.blind:
            blind = self.blind_bytes
            self._fact(
                ts, "tls.blind_traffic", to_client=blind["client"], to_server=blind["server"]
            )
        c = self._counts
        reason = self._control_closed or "capture ended"
        if capture_ended and self._control_closed is None:
            reason = "capture ended"
        self._fact(
            ts,
            "session.close",
            reason=reason,
            duration_ms=round((ts - self.started) * 1000, 1),
            commands=c.commands,
            replies=c.replies,
            replies_by_class=dict(sorted(c.by_class.items())),
            transfers=c.transfers,
            bytes=c.bytes,
        )
        self.closed = True
