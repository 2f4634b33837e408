"""What the engine remembers of a session: built only from the facts it has seen."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftpdiag.core.facts import SEVERITY_ORDER

_BYTES_IN_150 = re.compile(r"\((\d+) bytes\)")
KEPT = 100
"""How many outcomes and diagnoses a session keeps for its summary."""
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}


@dataclass
class SessionView:
    """Accumulated facts of one session, for checks that need context across events."""

    commands: int = 0
    last_user: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    expected: dict[int, int] = field(default_factory=dict)
    transfers: dict[int, dict[str, Any]] = field(default_factory=dict)
    progress: dict[int, int] = field(default_factory=dict)
    stalled: set[int] = field(default_factory=set)
    greeting_preliminary: bool = False
    # Totals of ended transfers, not the transfers: a long session must not grow without bound.
    ended_count: int = 0
    ended_bytes: int = 0
    ended_ms: float = 0.0
    outcomes: list[int | str] = field(default_factory=list)  # the first KEPT only
    diagnoses: list[dict[str, Any]] = field(default_factory=list)  # the first KEPT only
    active_pipes: set[int] = field(default_factory=set)
    no_completion: set[int] = field(default_factory=set)
    control_dropped: bool = False
    # A SIZE/MDTM/MLST of a file answered "not found"/"denied", not yet followed by another
    # command: if the client quits next, that refusal is why (curl gives up after SIZE).
    refused_lookup: dict[str, Any] | None = None
    slow_reply_ms: float = 2000.0
    # Settings as the server accepted them (RFC 959 §4.1.2, RFC 3659 §5: a refused TYPE or
    # REST changes nothing), not as the client last asked: a REST 1 probe answered 502 must not
    # make the next complete download look short.
    # None: no reply to TYPE/REST seen (a log without them): the transfer fact's word stands.
    type: str | None = None
    rest: int | None = None
    settings: dict[int, tuple[int, str]] = field(default_factory=dict)
    upstream: str | None = None
    peer_identified: bool = False  # the upstream is known to be no FTP server (SSH, HTTP...)
    client_resumption_told: bool = False  # tls.client_no_resume is said once per session
    tls_data_pipes: set[int] = field(default_factory=set)  # protected toward the server

    def remember(self, diagnosis: dict[str, Any]) -> None:
        """Keep a problem for the summary (the first KEPT are enough to rank a root cause);
        info diagnoses never rank as a cause, so they are not kept."""
        if diagnosis["severity"] != "info" and len(self.diagnoses) < KEPT:
            self.diagnoses.append(diagnosis)
        if str(diagnosis["rule"]).startswith("peer."):
            self.peer_identified = True

    def expected_bytes(self, pipe: int, rest: int, moved: int) -> int | None:
        """How many bytes a download should carry, or None when nothing says.

        SIZE (RFC 3659 §4) gives the whole file, so REST is subtracted. The ``(N bytes)`` of a
        150 reply is not standardised: vsftpd gives the whole file, ProFTPD what remains after
        REST; with REST both readings are possible, and the one that fits wins.
        """
        start = self.transfers.get(pipe)
        size = self.sizes.get(start["path"]) if start else None
        if size is not None:
            return max(size - rest, 0)
        announced = self.expected.get(pipe)
        if announced is None or rest == 0:
            return announced
        readings = [announced, max(announced - rest, 0)]
        return moved if moved in readings else min(readings)

    def effective(self, transfer: dict[str, Any]) -> tuple[int, str]:
        """The REST offset and TYPE in force for a ``transfer.start``/``transfer.end`` fact:
        those the server accepted, else the ones the fact carries."""
        rest = self.rest if self.rest is not None else int(transfer.get("rest") or 0)
        return rest, self.type or str(transfer.get("type") or "A")

    def settings_of(self, transfer: dict[str, Any]) -> tuple[int, str]:
        """The REST offset and TYPE in force when the transfer of this fact started."""
        return self.settings.get(int(transfer["pipe"])) or self.effective(transfer)

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        """Remember what later checks need; called after the checks have seen the event."""
        if event == "session.open":
            self.upstream = fields.get("upstream")
        elif (
            event == "tls.established"
            and fields.get("channel") == "data"
            and fields.get("side") == "server"
            and fields.get("pipe") is not None
        ):
            self.tls_data_pipes.add(int(fields["pipe"]))
        elif event == "command":
            self.commands += 1
            if fields.get("verb") == "USER":
                self.last_user = str(fields.get("arg") or "")
        elif event == "reply":
            self._observe_reply(fields)
        elif event == "transfer.start":
            self.transfers[fields["pipe"]] = fields
            self.settings[fields["pipe"]] = self.effective(fields)
            self.rest = None  # RFC 959 §4.1.3: REST applies to the next transfer command only
            self.active_pipes.add(fields["pipe"])
        elif event == "transfer.progress":
            pipe = fields["pipe"]
            if self.progress.get(pipe) == fields["bytes"]:
                self.stalled.add(pipe)
            self.progress[pipe] = fields["bytes"]
        elif event == "transfer.no_completion":
            self.no_completion.add(fields["pipe"])
        elif event == "transfer.end":
            pipe = fields["pipe"]
            self.ended_count += 1
            self.ended_bytes += int(fields["bytes"])
            self.ended_ms += float(fields["duration_ms"])
            if len(self.outcomes) < KEPT:
                self.outcomes.append(fields["outcome"])
            self.active_pipes.discard(pipe)
            for per_pipe in (self.transfers, self.expected, self.progress, self.settings):
                per_pipe.pop(pipe, None)
            self.stalled.discard(pipe)
            self.no_completion.discard(pipe)
            self.tls_data_pipes.discard(pipe)
        elif (
            event == "control.closed"
            and fields.get("side") == "server"
            and fields.get("transfer_open")
        ):
            self.control_dropped = True

    def _observe_reply(self, fields: dict[str, Any]) -> None:
        code, command, text = (
            fields.get("code"),
            fields.get("command"),
            str(fields.get("text") or ""),
        )
        arg = str(fields.get("arg") or "").strip()
        if command == "TYPE" and isinstance(code, int) and code // 100 == 2 and arg:
            self.type = arg[:1].upper()
        elif command == "TYPE" and isinstance(code, int) and code >= 400:
            self.type = self.type or "A"  # RFC 959 §3.1.1.1: ASCII until a TYPE is accepted
        elif command == "REST" and isinstance(code, int) and code >= 300:
            self.rest = int(arg) if code == 350 and arg.isdigit() else 0
        if code == 120 and "greeting" in (fields.get("state") or ()):
            self.greeting_preliminary = True
        elif code == 213 and command == "SIZE" and text.strip().isdigit():
            self.sizes[str(fields.get("arg") or "")] = int(text.strip())
        elif code in (125, 150) and fields.get("pipe") is not None:
            match = _BYTES_IN_150.search(text)
            if match:
                self.expected[int(fields["pipe"])] = int(match.group(1))

    def summary(
        self, close: dict[str, Any], priority: Callable[[str], int] = lambda rule: 0
    ) -> dict[str, Any]:
        """The ``session.summary`` record: counts, transfers, and diagnoses ranked by severity,
        specific rules before generic code explanations, then by the rule's ``priority``
        (higher first), earliest first. The first problem is the ``root_cause``."""
        ranked = sorted(
            enumerate(self.diagnoses),
            key=lambda item: (
                SEVERITY_RANK.get(item[1]["severity"], 3),
                item[1]["rule"].startswith("reply."),
                -priority(item[1]["rule"]),
                item[0],
            ),
        )
        problems = [d for _, d in ranked if d["severity"] != "info"]
        total = self.ended_bytes
        seconds = self.ended_ms / 1000
        return {
            "duration_ms": close.get("duration_ms"),
            "reason": close.get("reason"),
            "commands": close.get("commands"),
            "replies_by_class": close.get("replies_by_class"),
            "transfers": self.ended_count,
            "transfer_bytes": total,
            "transfer_rate_mbps": round(total * 8 / seconds / 1e6, 2) if seconds > 0 else 0.0,
            "outcomes": list(self.outcomes),
            "diagnoses": [
                {
                    "severity": d["severity"],
                    "rule": d["rule"],
                    "code": d["code"],
                    "title": d["title"],
                }
                for d in problems
            ],
            "root_cause": (
                {
                    "rule": problems[0]["rule"],
                    "title": problems[0]["title"],
                    "explanation": problems[0]["explanation"],
                }
                if problems
                else None
            ),
        }
