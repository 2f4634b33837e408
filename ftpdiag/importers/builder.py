"""Rebuild the proxy's records from what a log shows: commands, reply lines, client errors.

Every importer reads its format into calls on a :class:`SessionBuilder`; the builder does what
the proxy's session does with the same conversation — joins multi-line replies (with the core's
:class:`~ftpdiag.core.messages.ReplyAssembler`), pairs each reply with the command it answers,
tags the session state, opens and ends transfers — and returns records shaped exactly like the
proxy's JSON-lines log. So the rules never learn that a fact came from a pasted log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ftpdiag.core.messages import REDACTED, Reply, ReplyAssembler, parse_command
from ftpdiag.core.transfers import TRANSFER_VERBS, UPLOAD_VERBS

Record = dict[str, Any]
_PASSIVE = frozenset({"PASV", "EPSV"})
_ACTIVE = frozenset({"PORT", "EPRT"})
_LISTINGS = frozenset({"LIST", "NLST", "MLSD"})


@dataclass
class _Transfer:
    command: str
    path: str
    pipe: int
    started: datetime | None
    mode: str | None
    bytes: int | None = None
    shown: bool = False


@dataclass
class SessionBuilder:
    """Collects one session's conversation; :meth:`records` returns the proxy's records.

    ``sid`` is the session id of every record; ``source`` names the input format (the
    ``input`` field of ``session.open``). Timestamps are optional: when the log has them,
    records carry ``timestamp`` and replies a latency.
    """

    sid: str
    source: str
    client: str | None = None
    upstream: str | None = None
    _records: list[Record] = field(default_factory=list)
    _pending: deque[tuple[str, str, datetime | None]] = field(default_factory=deque)
    _assembler: ReplyAssembler = field(default_factory=ReplyAssembler)
    _started: datetime | None = None
    _last_at: datetime | None = None
    _commands: int = 0
    _replies: int = 0
    _by_class: dict[str, int] = field(default_factory=dict)
    _logged_in: bool = False
    _tls: bool = False
    _mode: str | None = None
    _transfer: _Transfer | None = None
    _pipes: int = 0
    _transfers: int = 0
    _bytes: int = 0
    _seen_reply: bool = False
    _closed: str | None = None
    _ended: tuple[_Transfer, int, datetime | None] | None = None
    _last_verb: str | None = None
    _greeted: bool = False
    unseen: list[str] = field(default_factory=list)
    transfer_type: str | None = None  # what the client says it uses ("binary mode": "I")

    # ---- what importers call ---------------------------------------------------------------
    def command(self, line: str, at: datetime | None = None) -> None:
        """A command the client sent (the raw line, e.g. ``RETR a.txt``)."""
        self._flush_transfer()
        parsed = parse_command(line.strip().encode("utf-8", "replace"))
        if not parsed.verb:
            return
        self._touch(at)
        self._commands += 1
        arg = parsed.loggable_arg
        if parsed.verb in ("PASS", "ACCT") and not parsed.arg:
            arg = REDACTED if "*" in line else ""
        self._emit("command", at, verb=parsed.verb, arg=arg)
        self._last_verb = parsed.verb
        self._pending.append((parsed.verb, arg, at))
        if parsed.verb == "AUTH" and arg.upper().startswith(("TLS", "SSL")):
            self._tls = True

    def reply_line(self, line: str, at: datetime | None = None) -> None:
        """One line of a reply as the server sent it (``230 Login ok`` or ``211-Features``)."""
        result = self._assembler.feed(line.rstrip("\r\n").encode("utf-8", "replace") + b"\r\n")
        if isinstance(result, Reply):
            self._reply(result, at)

    def reply(self, code: int, text: str, at: datetime | None = None) -> None:
        """A whole reply whose lines the log already joined (some logs print only the text)."""
        lines = text.split("\n") or [""]
        if len(lines) == 1:
            self.reply_line(f"{code} {lines[0]}", at)
            return
        self.reply_line(f"{code}-{lines[0]}", at)
        for inner in lines[1:-1]:
            self.reply_line(f" {inner}", at)
        self.reply_line(f"{code} {lines[-1]}", at)

    def client_error(
        self,
        kind: str,
        message: str,
        source: str,
        at: datetime | None = None,
        channel: str | None = None,
    ) -> None:
        """An error the client reported itself (``client.error``): the server may never know.

        ``channel`` None means "judge from the conversation": right after a PASV/EPSV/PORT/EPRT
        reply, or while a transfer command waits for its first reply, the error is the data
        connection's."""
        self._touch(at)
        if channel is None:
            channel = "data" if self._data_pending() else "control"
        mode = self._mode if channel == "data" else None
        awaiting = self._pending[0][0] if self._pending else None
        self._emit(
            "client.error",
            at,
            kind=kind,
            message=message,
            source=source,
            channel=channel,
            mode=mode,
            awaiting=awaiting,
            logged_in=self._logged_in,
        )

    def client_notice(
        self, kind: str, message: str, source: str, at: datetime | None = None
    ) -> None:
        """Something the client noticed and worked around (``client.notice``), such as a PASV
        address it would not use."""
        self._touch(at)
        self._emit("client.notice", at, kind=kind, message=message, source=source)

    def forget_pending(self) -> None:
        """Commands shown so far were answered off the record (a traceback shows the
        command that failed, not the replies before it)."""
        self._pending.clear()

    def _data_pending(self) -> bool:
        if self._mode is None:
            return False
        if self._pending:
            return self._pending[0][0] in TRANSFER_VERBS and self._transfer is None
        return self._last_verb in _PASSIVE | _ACTIVE

    def transferred(self, count: int, chunk: bool = False) -> None:
        """The log states how many bytes the current (or last) transfer moved; ``chunk``: one
        more piece of it (curl's trace shows every read)."""
        transfer = self._transfer or (self._ended[0] if self._ended is not None else None)
        if transfer is not None:
            transfer.bytes = (transfer.bytes or 0) + count if chunk else count

    def close(self, reason: str, at: datetime | None = None) -> None:
        """The log shows the session ending (QUIT answered, a hang-up, a fatal error)."""
        self._touch(at)
        if self._closed is None:
            self._closed = reason

    @property
    def reply_open(self) -> bool:
        """A multi-line reply has begun and not ended: the next lines are its inner lines."""
        return self._assembler.in_progress

    @property
    def awaiting(self) -> str | None:
        """The oldest command still unanswered (its verb)."""
        return self._pending[0][0] if self._pending else None

    @property
    def last_verb(self) -> str | None:
        """The verb of the last command shown."""
        return self._last_verb

    @property
    def closed(self) -> bool:
        """The log showed this session ending."""
        return self._closed is not None

    @property
    def empty(self) -> bool:
        """Nothing FTP-like was seen: no command, reply or client error."""
        return not self._records

    # ---- the result ---------------------------------------------------------------------------
    def records(self) -> list[Record]:
        """The session as the proxy would have logged it, from ``session.open`` to ``close``."""
        self._flush_transfer()
        opened: Record = {
            "event": "session.open",
            "session": self.sid,
            "client": self.client,
            "upstream": self.upstream,
            "upstream_mode": "same",
            "input": self.source,
        }
        if self._started is not None:
            opened["timestamp"] = self._started.isoformat()
        out = [opened, *self._records]
        if self._seen_reply and not self._greeted and "start" not in self.unseen:
            self.unseen.insert(0, "start")
        if self._closed is None:
            self.unseen.append("end")
        if self.unseen:
            verb, arg, _ = self._pending[0] if self._pending else (None, "", None)
            awaiting = f"{verb} {arg}".strip() if verb else None
            out.append(
                self._record(
                    "log.partial", self._last_at, unseen=list(self.unseen), awaiting=awaiting
                )
            )
        duration = (
            round((self._last_at - self._started).total_seconds() * 1000, 1)
            if self._started is not None and self._last_at is not None
            else None
        )
        out.append(
            self._record(
                "session.close",
                self._last_at,
                reason=self._closed or "log ended",
                duration_ms=duration,
                commands=self._commands,
                replies=self._replies,
                replies_by_class=dict(self._by_class),
                transfers=self._transfers,
                bytes=self._bytes,
            )
        )
        return out

    # ---- internals ----------------------------------------------------------------------------
    def _touch(self, at: datetime | None) -> None:
        if at is not None:
            self._started = self._started or at
            self._last_at = at

    def _record(self, event: str, at: datetime | None, **fields: Any) -> Record:
        record: Record = {"event": event, "session": self.sid}
        if at is not None:
            record["timestamp"] = at.isoformat()
        record.update(fields)
        return record

    def _emit(self, event: str, at: datetime | None, **fields: Any) -> None:
        self._records.append(self._record(event, at, **fields))

    def _reply(self, reply: Reply, at: datetime | None) -> None:
        self._touch(at)
        first = not self._seen_reply
        self._seen_reply = True
        greeting = first and self._commands == 0
        if first and not greeting and not self._pending:
            self.unseen.append("start")
        if greeting and reply.code not in (120, 220, 421):
            self.unseen.append("start")  # a reply to a command the log does not show
            greeting = False
        self._greeted = self._greeted or greeting
        pending = self._pending[0] if self._pending else None
        if pending is not None and not reply.preliminary:
            self._pending.popleft()
        verb, arg, sent = pending if pending else (None, None, None)
        self._replies += 1
        klass = f"{reply.code // 100}xx"
        self._by_class[klass] = self._by_class.get(klass, 0) + 1
        if verb in TRANSFER_VERBS and reply.preliminary and self._transfer is None:
            self._pipes += 1
            self._transfer = _Transfer(str(verb), str(arg or ""), self._pipes, at, self._mode)
        transfer_final = (
            self._transfer is not None and not reply.preliminary and verb == self._transfer.command
        )
        held = self._transfer
        if transfer_final and held and (reply.code // 100 != 2 or held.bytes is not None):
            self._show_transfer_start()  # else held until the log states the byte count
        self._emit(
            "reply",
            at,
            code=reply.code,
            text=reply.text,
            command=verb,
            arg=arg,
            latency_ms=round((at - sent).total_seconds() * 1000, 2) if at and sent else None,
            state=self._state(greeting, verb),
            # A log cannot prove a reply unsolicited: its command may just not be shown.
            unsolicited=False,
            mismatched_codes=list(reply.mismatched_codes),
        )
        if reply.preliminary or verb is None:
            return
        if reply.code in (230, 232):
            self._logged_in = True
        if verb in _PASSIVE and reply.code in (227, 229):
            self._mode = "passive"
        elif verb in _ACTIVE and reply.code == 200:
            self._mode = "active"
        if transfer_final and self._transfer is not None:
            self._end_transfer(reply.code, at)

    def _state(self, greeting: bool, verb: str | None) -> list[str]:
        tags = ["greeting"] if greeting else []
        tags.append("logged_in" if self._logged_in else "before_login")
        tags += ["tls"] if self._tls else []
        if self._mode is not None:
            tags.append(self._mode)
        if self._transfer is not None:
            tags.append("transfer")
        if verb == "ABOR":
            tags.append("abort")
        return tags

    def _start_fields(self, transfer: _Transfer) -> dict[str, Any]:
        direction = (
            "upload"
            if transfer.command in UPLOAD_VERBS
            else "listing"
            if transfer.command in _LISTINGS
            else "download"
        )
        return {
            "pipe": transfer.pipe,
            "command": transfer.command,
            "path": transfer.path,
            "direction": direction,
            "mode": {"client": transfer.mode, "server": transfer.mode},
            "type": self.transfer_type,
            "rest": 0,
        }

    def _show_transfer_start(self) -> None:
        transfer = self._transfer
        if transfer is None or transfer.shown:
            return
        transfer.shown = True
        self._emit("transfer.start", transfer.started, **self._start_fields(transfer))

    def _end_transfer(self, outcome: int, at: datetime | None) -> None:
        """A successful transfer whose size the log does not state waits for a count (FileZilla
        prints it after the 226): without one it is left out, because a made-up byte count
        would read as a truncated file."""
        transfer = self._transfer
        if transfer is None:
            return
        if outcome // 100 == 2 and transfer.bytes is None:
            self._ended = (transfer, outcome, at)
            self._transfer = None
            return
        self._write_end(transfer, outcome, at)
        self._transfer = None

    def _write_end(self, transfer: _Transfer, outcome: int, at: datetime | None) -> None:
        moved = transfer.bytes or 0
        began = transfer.started
        duration = round((at - began).total_seconds() * 1000, 1) if at and began else 0.0
        self._transfers += 1
        self._bytes += moved
        self._emit(
            "transfer.end",
            at,
            **self._start_fields(transfer),
            bytes=moved,
            duration_ms=duration,
            rate_mbps=round(moved * 8 / duration / 1000, 2) if duration else 0.0,
            outcome=outcome,
            client_end="unknown",
            server_end="unknown",
            first_closed=None,
            aborted_by=None,
        )

    def _flush_transfer(self) -> None:
        """Write a successful transfer held for its byte count, once the count came."""
        held = self._ended
        if held is None:
            return
        transfer, outcome, at = held
        self._ended = None
        if transfer.bytes is not None:
            self._emit("transfer.start", transfer.started, **self._start_fields(transfer))
            self._write_end(transfer, outcome, at)
