"""The vocabulary of facts: every record the core, the glue and the engine write, named once.

A fact is what the JSON-lines log holds (``event`` + fields) and what the diagnosis engine
reads. Whatever produces facts (the live proxy, an importer of a client's log, a packet
capture, a replay) and whatever consumes them (the checks' ``@handles``, ``rules/view.py``,
the console renderer, the log levels, the README's event table) names them from here; a test
(tests/test_facts.py) holds every consumer to this table, so a renamed event or field fails a
test instead of silently changing what renders.

Adding a fact is one entry in ``FACTS``; ``markdown_table()`` regenerates the README's table
(``python -m ftpdiag.core.facts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["debug", "info", "warning", "severity"]
"""A fact's log level; ``severity`` means the record's own ``severity`` field decides."""

Severity = Literal["info", "warning", "error"]
SEVERITY_ORDER: tuple[Severity, ...] = ("error", "warning", "info")
"""A diagnosis's severities, most serious first (a summary ranks them so); each is also the
log level of its ``diagnosis`` record."""

COMMON_FIELDS = ("event", "timestamp", "level", "session")
"""Fields the logging adds to every record (``session`` on a session's records)."""


@dataclass(frozen=True, slots=True)
class FactSpec:
    """One kind of fact: its name, the fields it may carry, its log level and what it says."""

    name: str
    fields: tuple[str, ...]
    doc: str
    level: Level = "info"

    def row(self) -> str:
        """This fact's row of the README's event table."""
        level = "" if self.level in ("info", "severity") else f" ({self.level})"
        fields = ", ".join(f"`{name}`" for name in self.fields)
        return f"| `{self.name}`{level} | {fields} | {self.doc} |"


_TRANSFER_START = ("pipe", "command", "path", "direction", "mode", "type", "rest")

FACTS: tuple[FactSpec, ...] = (
    # ---- the proxy as a whole (glue) --------------------------------------------------------
    FactSpec(
        "proxy.listen",
        ("listen", "upstream", "sandbox", "user", "sandbox_password", "anonymous", "try_cmd"),
        "the proxy is listening; the `sandbox` fields only with the built-in sandbox server",
    ),
    FactSpec(
        "metrics.listen",
        ("listen",),
        "`--metrics`: Prometheus metrics are served on `listen`",
    ),
    FactSpec(
        "proxy.exposed",
        ("listen", "hint"),
        "listening beyond loopback without `--allow-client`",
        "warning",
    ),
    FactSpec(
        "access.refused",
        ("client", "reason"),
        "refused by `--allow-client`/`--max-sessions*` (the client got 421)",
    ),
    FactSpec(
        "proxy.internal_error",
        ("error", "message", "where", "traceback"),
        "a bug: `error` the exception's type, `message` its text (PASS/ACCT arguments and URL"
        " passwords scrubbed), `where` the innermost frame of ftpdiag's own code"
        " (`module:line in function`), `traceback` (JSON log only; the console asks for a"
        " report); with `session`, that session got 421 and both its control connections were"
        " closed at once, and the proxy went on; without, Twisted reported a failure in the glue",
        "warning",
    ),
    FactSpec(
        "tls.ca",
        ("ca", "created", "hint"),
        "where the local CA is and how to trust it",
    ),
    FactSpec(
        "tls.insecure",
        ("upstream",),
        "server certificate verification is off",
        "warning",
    ),
    # ---- one session (core) ------------------------------------------------------------
    FactSpec(
        "session.open",
        ("client", "upstream", "upstream_mode", "input", "tls"),
        "a client connected; from a capture also `input` (the capture's file name) and, for"
        ' implicit FTPS, `tls: "implicit"`',
    ),
    FactSpec("upstream.connect", ("local", "peer"), "the control connection is up", "debug"),
    FactSpec(
        "upstream.failed",
        ("kind", "detail", "upstream"),
        "the server could not be reached; `kind`: `refused`/`timeout`/`dns`/`unreachable`/`error`",
    ),
    FactSpec(
        "route.selected",
        ("user", "host", "port", "upstream"),
        "`--route-by-user`: the client logged in as `user@host[:port]`; the proxy dials `upstream`",
    ),
    FactSpec(
        "route.refused",
        ("kind", "reason"),
        "`--route-by-user`: no server for this login (`kind`: `malformed`, `not allowed`, or the"
        " `upstream.failed` kind); the client got 530 and may log in again",
    ),
    FactSpec(
        "command",
        ("verb", "arg"),
        "a client's command: `verb` upper-case, `arg` `****` for PASS and ACCT",
    ),
    FactSpec(
        "reply",
        (
            "code",
            "text",
            "command",
            "arg",
            "upstream_command",
            "pipe",
            "latency_ms",
            "state",
            "unsolicited",
            "mismatched_codes",
            "idle_ms",
            "meaning",
        ),
        "a server's reply: `text` all lines, codes stripped; `command` and `arg` it answers"
        " (null for the greeting or an unsolicited reply); `upstream_command` the verb the server"
        " got (PASV for the client's PORT under `--upstream-mode passive`; absent: the client's);"
        " `pipe` the data pipe it concerns; `state` tags such as `greeting`,"
        " `logged_in`, `passive`, `transfer`, `abort`; `meaning` the catalog's title",
    ),
    FactSpec(
        "proxy.reply",
        ("code", "text", "command"),
        "a reply ftpdiag itself gave the client",
    ),
    FactSpec("proxy.unsupported", ("verb", "instead"), "a command ftpdiag refuses to relay"),
    FactSpec(
        "data.passive",
        ("pipe", "code", "advertised", "dialled", "control_peer"),
        "the server's passive address and the one the proxy dials (`dialled` null from a capture)",
        "debug",
    ),
    FactSpec("data.listen", ("pipe", "side", "address"), "a data listener of the proxy", "debug"),
    FactSpec("data.connect", ("pipe", "side", "peer"), "one end of a data pipe is up", "debug"),
    FactSpec(
        "data.close",
        ("pipe", "to_client", "to_server", "client_end", "server_end", "first_closed"),
        "a data pipe is down; each end `eof`/`reset`/`closed`/`never`",
        "debug",
    ),
    FactSpec(
        "data.failed",
        ("pipe", "side", "kind", "detail", "client_mode", "server_mode"),
        "an end of a data pipe failed; `kind`: `refused`/`timeout`/`unreachable`/`listen`/`stall`",
    ),
    FactSpec(
        "data.superseded",
        ("pipe", "code"),
        "a PASV/PORT replaced by a newer one before its reply came",
    ),
    FactSpec(
        "data.setup_failed",
        ("pipe", "server_mode", "code"),
        "the server refused the data set-up command",
    ),
    FactSpec(
        "data.fallback",
        ("pipe", "to", "code"),
        "`--upstream-mode auto`: the server refused passive mode, the proxy tries active",
    ),
    FactSpec("transfer.start", _TRANSFER_START, "a transfer command; `mode` is `{client, server}`"),
    FactSpec(
        "transfer.progress",
        ("pipe", "command", "path", "bytes", "elapsed_ms", "rate_mbps"),
        "a running transfer (every 5 s)",
    ),
    FactSpec(
        "transfer.end",
        (
            *_TRANSFER_START,
            "bytes",
            "duration_ms",
            "rate_mbps",
            "outcome",
            "client_end",
            "server_end",
            "first_closed",
            "aborted_by",
            "missed_bytes",
            "data_from",
            "data_to",
        ),
        "a transfer is over; `outcome` the final reply code, or `closed` (from a capture"
        " `capture_ended` when it stops first); from a capture also `missed_bytes` (sent but"
        " absent from the capture), `data_from`/`data_to` (the data connection's originator and"
        " responder, null when none came), and the ends `open` (no FIN/RST in the capture) or"
        " `unseen` (the server announced the connection, the capture lacks it)",
    ),
    FactSpec(
        "transfer.no_completion",
        ("pipe", "command", "path", "bytes", "waited_s"),
        "the data is through but the final reply did not come",
    ),
    FactSpec(
        "security.bounce_refused",
        ("verb", "requested", "client"),
        "a PORT/EPRT toward another host than the client's",
    ),
    FactSpec(
        "security.bounce",
        ("verb", "requested", "client"),
        "a capture shows a PORT/EPRT naming a host other than the client (RFC 2577 bounce)",
        "warning",
    ),
    FactSpec(
        "capture.gap",
        ("side", "channel", "bytes"),
        "control bytes missing from a capture (`channel` is `control`); the line they cut is lost",
        "warning",
    ),
    FactSpec(
        "security.data_theft_refused",
        ("pipe", "side", "peer", "expected"),
        "a data connection from an unexpected peer",
    ),
    FactSpec("protocol.line_too_long", ("side", "limit", "head"), "a control line over the limit"),
    FactSpec(
        "protocol.malformed_reply",
        ("text", "greeting"),
        "a server line that is no reply; `greeting`: it came where the 220 greeting was due"
        " (an SSH banner, an HTTP answer)",
    ),
    FactSpec(
        "protocol.reply_too_long", ("code", "limit"), "a multi-line reply that never ended in time"
    ),
    FactSpec(
        "protocol.bad_address",
        ("side", "verb", "arg", "code", "text", "error"),
        "an address in PORT/EPRT (client) or a PASV/EPSV reply (server) that does not parse",
    ),
    FactSpec(
        "protocol.reply_unterminated",
        ("code", "lines", "mismatched_codes"),
        "a multi-line reply never ended before the connection did",
    ),
    FactSpec("greeting.timeout", ("seconds",), "the server sent no greeting in time"),
    FactSpec(
        "control.idle_timeout",
        ("seconds", "awaiting", "transfer_stalled"),
        "no activity for `--idle-timeout`; `awaiting` a command still unanswered",
    ),
    FactSpec(
        "control.server_silent",
        ("awaiting", "seconds"),
        "the server left a command unanswered past `--idle-timeout`",
    ),
    FactSpec(
        "control.closed",
        ("side", "clean", "detail", "awaiting", "transfer_open", "client_head"),
        "one side closed its control connection; `client_head` the first bytes the client sent"
        " without a line end, as Latin-1 text (a TLS ClientHello from an implicit-FTPS client;"
        " null when none)",
        "debug",
    ),
    FactSpec(
        "tls.established",
        (
            "side",
            "channel",
            "pipe",
            "version",
            "cipher",
            "resumed",
            "peer_subject",
            "peer_not_after",
        ),
        "a TLS handshake finished; `channel` is `control`/`data`",
    ),
    FactSpec(
        "tls.failed",
        ("side", "channel", "pipe", "reason", "detail", "prot_p"),
        "a TLS handshake failed; `reason` e.g. `wrong host name`, `detail` OpenSSL's words",
    ),
    FactSpec(
        "tls.upstream_refused",
        ("command", "code", "text"),
        "the server refused the proxy's AUTH TLS/PBSZ/PROT",
    ),
    FactSpec(
        "tls.blind",
        ("reason",),
        "from here ftpdiag is blind: TLS pass-through, or a capture after AUTH TLS, of implicit"
        " FTPS, or of RFC 2228 protected commands (ENC/MIC/CONF)",
    ),
    FactSpec(
        "tls.blind_traffic",
        ("to_client", "to_server"),
        "after `tls.blind`: bytes relayed (or captured) unread",
    ),
    FactSpec(
        "session.close",
        ("reason", "duration_ms", "commands", "replies", "replies_by_class", "transfers", "bytes"),
        "the session is over (from a capture `reason` may be `capture ended`)",
    ),
    FactSpec(
        "transfer.data",
        ("pipe", "file", "bytes", "truncated", "error"),
        "`--record-data` kept what the server sent on this pipe (`bytes` kept)",
    ),
    # ---- a replay of a recorded session (``ftpdiag replay``) ---------------------------
    FactSpec(
        "replay.listen",
        (
            "listen",
            "input",
            "session",
            "sessions",
            "timing",
            "greeting",
            "commands",
            "flexible",
            "transfers",
            "closes",
        ),
        "what `ftpdiag replay` serves",
    ),
    FactSpec(
        "replay.unmatched",
        ("expected", "actual"),
        "a command the recording did not expect (answered 500; never shows a password)",
    ),
    FactSpec(
        "replay.unrecorded",
        ("verb", "arg"),
        "a command answered in any order that the recorded client never sent",
    ),
    FactSpec(
        "replay.refused_dial",
        ("address",),
        "active mode toward an address that is not loopback: the replay refused (425)",
    ),
    # ---- logs people have, imported by ``ftpdiag analyze`` (``importers/``) -------------
    FactSpec(
        "client.error",
        ("kind", "message", "source", "channel", "mode", "awaiting", "logged_in"),
        "imported logs only: an error the client reported itself; `kind`"
        " `timeout`/`refused`/`dns`/`unreachable`/`tls`/`reset`/`closed`/`login`/`not_found`/"
        "`error`, `message` the client's words, `source` (`curl (7)`, `filezilla`, `lftp`,"
        " `python` …), `channel` `control`/`data`, `awaiting` the command left unanswered",
    ),
    FactSpec(
        "client.notice",
        ("kind", "message", "source"),
        "imported logs only: a server problem the client noticed and worked around (`kind`"
        " `pasv_address`: it did not use the address of the PASV reply)",
    ),
    FactSpec(
        "log.partial",
        ("unseen", "awaiting"),
        "imported logs only: `unseen` what the log does not show (`start`: it begins after the"
        " greeting; `end`: it stops before the session ended); `awaiting` the last command"
        " shown without a reply, if any",
    ),
    FactSpec(
        "analyze.input",
        ("input", "path", "sessions"),
        "`ftpdiag analyze --format json` only, first: `input` the detected format",
    ),
    # ---- the HTML report (``--report-dir``) ---------------------------------------------
    FactSpec("report.written", ("path",), "`--report-dir` wrote the session's HTML report"),
    FactSpec(
        "report.failed",
        ("path", "error"),
        "`--report-dir` could not write the session's HTML report",
        "warning",
    ),
    # ---- the diagnosis engine ------------------------------------------------------------
    FactSpec(
        "diagnosis",
        ("code", "rule", "severity", "title", "explanation", "remedy", "evidence"),
        "`rule` a stable id (e.g. `transfer.aborted`), `severity` `info`/`warning`/`error`"
        " (also the log level), `evidence` what the rule used",
        "severity",
    ),
    FactSpec(
        "session.summary",
        (
            "operations",
            "succeeded",
            "failed",
            "cancelled",
            "operations_by_kind",
            "failed_operations",
            "abnormal_end",
            "outcome_text",
            "duration_ms",
            "reason",
            "commands",
            "replies_by_class",
            "transfers",
            "transfer_bytes",
            "transfer_rate_mbps",
            "outcomes",
            "diagnoses",
            "root_cause",
        ),
        "after `session.close`: first the outcome of what the user asked for (`operations`,"
        " `succeeded`, `failed`, `cancelled` by the client on purpose, `operations_by_kind`"
        " such as `login`/`listing`/`download`/`upload`/`file`, `failed_operations` with"
        " `kind`, `command`, `arg`, `code`, `abnormal_end` the close reason or null,"
        ' `outcome_text` "1 of 3 uploads failed"); then counts, `outcomes` (transfer reply'
        " codes), `diagnoses` ranked by severity, and `root_cause` (`rule`, `title`,"
        " `explanation`, `remedy`, `reply_meaning`), null unless an operation failed or the"
        " session ended abnormally",
    ),
)

BY_NAME: dict[str, FactSpec] = {spec.name: spec for spec in FACTS}
"""Event name → its spec."""

_LEVEL_OF = {spec.name: spec.level for spec in FACTS}


def level_of(event: str, fields: Mapping[str, Any]) -> str:
    """The log level of a record, whoever writes it (the proxy's log, an imported capture):
    as its spec says, a diagnosis by its severity; a record not named here logs at info."""
    level = _LEVEL_OF.get(event, "info")
    if level == "severity":
        severity = str(fields.get("severity"))
        return severity if severity in SEVERITY_ORDER else "info"
    return level


TABLE_HEAD = "| event | fields | meaning |\n|---|---|---|"


def markdown_table() -> str:
    """The README's event table, one row per fact in ``FACTS`` order."""
    return "\n".join([TABLE_HEAD, *(spec.row() for spec in FACTS)])


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    print(markdown_table())
