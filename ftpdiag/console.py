"""The console rendering of ftpdiag's events: one line per command and reply, the diagnosis
indented right under the reply that triggered it, and a summary block at the end.

It is the last processor of the console sink; it only formats, so tests can render any
recorded event and compare text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, MutableMapping
from typing import Any

WIDTH = 100
INDENT = " " * 15
_RESET = "\x1b[0m"
_STYLES = {
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "blue": "\x1b[34m",
    "cyan": "\x1b[36m",
}
_MARK = {"info": ("✓", "green"), "warning": ("⚠", "yellow"), "error": ("✗", "red")}


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rate(n_bytes: int, duration_ms: float) -> str:
    """A rate worth reading: none for a transfer too small or quick to measure, else in the
    unit that fits (kB/s for a slow link, MB/s for a fast one)."""
    if n_bytes < 65536 or duration_ms < 10:
        return ""
    per_second = n_bytes / (duration_ms / 1000)
    if per_second < 1e6:
        return f"  {per_second / 1e3:.1f} kB/s"
    return f"  {per_second / 1e6:.1f} MB/s"


class ConsoleRenderer:
    """Renders an event dict to coloured (or plain) text lines."""

    def __init__(self, color: bool = True, verbose: bool = False) -> None:
        self.color = color
        self.verbose = verbose

    def paint(self, text: str, style: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if self.color else text

    def __call__(self, ev: MutableMapping[str, Any]) -> str:
        event = str(ev.get("event", ""))
        method = getattr(self, "_" + event.replace(".", "_"), None)
        body = method(ev) if method is not None else self._generic(ev)
        if not body:
            return ""
        if body.startswith(INDENT):
            return body  # diagnoses and summaries hang under the line that caused them
        stamp = str(ev.get("timestamp", ""))[11:19]
        head = f"{self.paint(stamp, 'dim')} {self.paint(str(ev.get('session', '----')), 'cyan')} "
        return head + body

    # ---- one method per event ------------------------------------------------------
    def _session_open(self, ev: Mapping[str, Any]) -> str:
        return f"⇄ session open   client {ev['client']} → upstream {ev['upstream']}"

    def _command(self, ev: Mapping[str, Any]) -> str:
        arg = f" {ev['arg']}" if ev.get("arg") else ""
        return self.paint("→ ", "blue") + f"{ev['verb']}{arg}"

    def _reply(self, ev: Mapping[str, Any]) -> str:
        lines = str(ev.get("text", "")).split("\n")
        first = f"← {ev['code']} {lines[0]}"
        latency = f"{ev['latency_ms']:.1f} ms" if ev.get("latency_ms") is not None else ""
        pad = max(1, WIDTH - 16 - len(first) - len(latency))
        out = first + " " * pad + self.paint(latency, "dim")
        for extra in lines[1:]:
            out += "\n" + INDENT + f"  {extra}"
        if self.verbose and ev.get("meaning"):
            out += "\n" + INDENT + self.paint(f"· {ev['meaning']}", "dim")
        return out

    def _proxy_reply(self, ev: Mapping[str, Any]) -> str:
        return self.paint(f"⇠ {ev['code']} {ev['text']}", "yellow") + self.paint(
            "  (from ftpdiag)", "dim"
        )

    def _diagnosis(self, ev: Mapping[str, Any]) -> str:
        mark, color = _MARK.get(str(ev.get("severity")), ("·", "dim"))
        title = str(ev.get("title", ""))
        if ev.get("severity") == "info" and not self.verbose:
            return INDENT + self.paint(f"{mark} {title}", color)
        wrap = textwrap.TextWrapper(
            width=WIDTH, initial_indent=INDENT + "  ", subsequent_indent=INDENT + "  "
        )
        parts = [INDENT + self.paint(f"{mark} {title}", color)]
        if ev.get("explanation"):
            parts.append(wrap.fill(str(ev["explanation"])))
        if ev.get("remedy") and ev.get("severity") != "info":
            parts.append(wrap.fill("Fix: " + str(ev["remedy"])))
        return "\n".join(parts)

    def _control_closed(self, ev: Mapping[str, Any]) -> str:
        how = "cleanly" if ev.get("clean") else f"abruptly ({ev.get('detail')})"
        return self.paint(f"⇄ {ev['side']} closed the control connection {how}", "dim")

    def _client_error(self, ev: Mapping[str, Any]) -> str:
        where = " (data connection)" if ev.get("channel") == "data" else ""
        return self.paint(f"✗ {ev.get('source')}: {ev.get('message')}{where}", "red")

    def _client_notice(self, ev: Mapping[str, Any]) -> str:
        return self.paint(f"⚠ {ev.get('source')}: {ev.get('message')}", "yellow")

    def _log_partial(self, ev: Mapping[str, Any]) -> str:
        unseen = " and ".join(str(u) for u in ev.get("unseen") or ())
        return self.paint(f"… the log does not show the session's {unseen}", "dim")

    def _proxy_listen(self, ev: Mapping[str, Any]) -> str:
        text = f"ftpdiag listening on {ev['listen']} → upstream {ev['upstream']}"
        if ev.get("sandbox"):
            text += (
                f"\n{INDENT}built-in sandbox server: user {ev['user']},"
                f" password {ev['sandbox_password']},"
                f" anonymous allowed\n{INDENT}try: {ev['try_cmd']}"
            )
        return self.paint(text, "bold")

    def _proxy_exposed(self, ev: Mapping[str, Any]) -> str:
        return self.paint(
            f"⚠ listening on {ev['listen']}, beyond loopback, without --allow-client: anyone who"
            f" can reach this port can use the proxy.\n{INDENT}Fix: add --allow-client CIDR"
            " (repeatable) for the clients you expect.",
            "yellow",
        )

    def _access_refused(self, ev: Mapping[str, Any]) -> str:
        text = f"⊘ refused client {ev['client']}: {ev['reason']} (answered 421)"
        return self.paint(text, "yellow")

    def _tls_ca(self, ev: Mapping[str, Any]) -> str:
        ca = ev["ca"]
        state = "created its local CA" if ev.get("created") else "uses its local CA"
        return self.paint(
            f"FTPS: ftpdiag {state} at {ca}; clients must trust it to accept the certificates"
            f" ftpdiag shows them.\n{INDENT}Trust it: curl --cacert {ca} …"
            f"  (lftp: set ssl:ca-file {ca})",
            "dim",
        )

    def _tls_insecure(self, ev: Mapping[str, Any]) -> str:
        return self.paint(
            f"⚠ --insecure: the certificate of {ev['upstream']} is not verified; anyone in the"
            " path could impersonate the server.",
            "yellow",
        )

    def _proxy_internal_error(self, ev: Mapping[str, Any]) -> str:
        message = f": {ev['message']}" if ev.get("message") else ""
        victim = "this session got 421 and was closed; " if ev.get("session") else ""
        return self.paint(
            f"✗ internal error in ftpdiag, {ev['error']}{message} (at {ev.get('where')});"
            f" {victim}please report this bug with the JSON log (--log-file) attached.",
            "red",
        )

    def _transfer_start(self, ev: Mapping[str, Any]) -> str:
        arrow = "⇣" if ev.get("direction") == "download" else "⇡"
        mode = ev.get("mode") or {}
        return f"{arrow} {ev['command']} {ev.get('path', '')}  " + self.paint(
            f"(client {mode.get('client')}, server {mode.get('server')}, TYPE {ev.get('type')}"
            + (f", REST {ev['rest']}" if ev.get("rest") else "")
            + ")",
            "dim",
        )

    def _transfer_progress(self, ev: Mapping[str, Any]) -> str:
        rate = float(ev.get("rate_mbps") or 0) / 8
        return self.paint(
            f"⋯ {ev['command']} {ev.get('path', '')}  {_human_bytes(int(ev['bytes']))}"
            f"  {rate:.1f} MB/s",
            "dim",
        )

    def _transfer_end(self, ev: Mapping[str, Any]) -> str:
        ok = isinstance(ev.get("outcome"), int) and 200 <= ev["outcome"] < 300
        moved, duration = int(ev["bytes"]), float(ev["duration_ms"])
        text = (
            f"{'✓' if ok else '✗'} {ev['command']} {ev.get('path', '')}"
            f"  {_human_bytes(moved)}"
            f" in {duration:.0f} ms{_rate(moved, duration)}  outcome {ev['outcome']}"
        )
        return self.paint(text, "green" if ok else "red")

    def _session_close(self, ev: Mapping[str, Any]) -> str:
        seconds = float(ev.get("duration_ms") or 0) / 1000
        return (
            f"⇄ session closed  {seconds:.1f} s"
            f" · {_plural(int(ev.get('commands') or 0), 'command')}"
            f" · {_plural(int(ev.get('transfers') or 0), 'transfer')}"
            f" ({_human_bytes(int(ev.get('bytes') or 0))})"
            f" · {ev.get('reason')}"
        )

    def _session_summary(self, ev: Mapping[str, Any]) -> str:
        cause = ev.get("root_cause")
        outcome = str(ev.get("outcome_text") or "")
        if not cause:
            healthy = (outcome[:1].upper() + outcome[1:] + ". ") if outcome else ""
            return INDENT + self.paint(f"{healthy}No problems found in this session.", "green")
        wrap = textwrap.TextWrapper(width=WIDTH, initial_indent=INDENT, subsequent_indent=INDENT)
        lines = [outcome[:1].upper() + outcome[1:] + "."] if outcome else []
        lines.append(self.paint(f"Most likely cause: {cause['title']}", "bold"))
        others = ev.get("diagnoses", [])[1:4]
        lines += [f"also: {d['severity']} {d['rule']}: {d['title']}" for d in others]
        return "\n".join(wrap.fill(line) for line in lines)

    def _report_written(self, ev: Mapping[str, Any]) -> str:
        return f"⇄ report written {ev.get('path')}"

    def _report_failed(self, ev: Mapping[str, Any]) -> str:
        return self.paint(f"✗ report not written to {ev.get('path')}: {ev.get('error')}", "red")

    def _replay_listen(self, ev: Mapping[str, Any]) -> str:
        greeting = ev.get("greeting") or "none (the server never spoke)"
        lines = [
            f"ftpdiag replay listening on {ev['listen']} (timing {ev['timing']})",
            f"session {ev['session']} of {ev['input']}: greeting {greeting},"
            f" {ev['commands']} commands in order",
        ]
        if ev.get("flexible"):
            lines.append("answered in any order: " + " ".join(ev["flexible"]))
        lines += [f"transfer {t}" for t in ev.get("transfers", ())]
        if ev.get("closes"):
            lines.append("the server closes the control connection at the recorded point")
        if len(ev.get("sessions", ())) > 1:
            lines.append("other sessions (--session): " + " ".join(ev["sessions"]))
        return self.paint(lines[0], "bold") + "".join(f"\n{INDENT}{line}" for line in lines[1:])

    def _replay_unmatched(self, ev: Mapping[str, Any]) -> str:
        expected = ev.get("expected") or "(end of recording)"
        return self.paint(f"✗ unexpected {ev['actual']} (recording expects {expected}): 500", "red")

    def _generic(self, ev: Mapping[str, Any]) -> str:
        skip = {"event", "timestamp", "level", "session"}
        detail = " ".join(f"{k}={v}" for k, v in ev.items() if k not in skip)
        return self.paint(f"· {ev.get('event')} {detail}", "dim")
