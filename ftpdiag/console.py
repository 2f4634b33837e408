"""The console rendering of ftpdiag's events: one line per command and reply, the diagnosis
indented right under the reply that triggered it, and a summary block at the end.

It is the last processor of the console sink; it only formats, so tests can render any
recorded event and compare text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, MutableMapping
from typing import Any

from ftpdiag.i18n import FALLBACK, labels, reword, word

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
    """Renders an event dict to coloured (or plain) text lines, labels in ``lang``.

    Values the log carries in English (sides, modes, severities, close reasons) are shown in
    the chosen language when the labels know them, as they are otherwise."""

    def __init__(self, color: bool = True, verbose: bool = False, lang: str = FALLBACK) -> None:
        self.color = color
        self.verbose = verbose
        self.lang = lang
        self._labels = labels(lang)

    def label(self, key: str, **values: Any) -> str:
        """The text of ``key`` (``console.…`` by default) in the renderer's language."""
        template = self._labels[key if "." in key else f"console.{key}"]
        return template.format(**values) if values else template

    def word(self, table: str, value: object) -> str:
        """A logged value (``side``, ``mode``, ``severity``, ``reason``) in words."""
        return word(table, value, self.lang)

    def count(self, key: str, n: object) -> str:
        """``1 command``/``2 commands``: the singular form where the language has one."""
        return self.label(f"{key}_one" if n == 1 else key, n=n)

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
        return self.label("session_open", client=ev["client"], upstream=ev["upstream"])

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
            "  " + self.label("from_ftpdiag"), "dim"
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
            parts.append(wrap.fill(self.label("fix", remedy=ev["remedy"])))
        return "\n".join(parts)

    def _control_closed(self, ev: Mapping[str, Any]) -> str:
        how = (
            self.label("cleanly")
            if ev.get("clean")
            else self.label("abruptly", detail=ev.get("detail"))
        )
        side = self.word("side", ev["side"])
        return self.paint(self.label("control_closed", side=side, how=how), "dim")

    def _client_error(self, ev: Mapping[str, Any]) -> str:
        where = " (data connection)" if ev.get("channel") == "data" else ""
        return self.paint(f"✗ {ev.get('source')}: {ev.get('message')}{where}", "red")

    def _client_notice(self, ev: Mapping[str, Any]) -> str:
        return self.paint(f"⚠ {ev.get('source')}: {ev.get('message')}", "yellow")

    def _log_partial(self, ev: Mapping[str, Any]) -> str:
        unseen = " and ".join(str(u) for u in ev.get("unseen") or ())
        return self.paint(f"… the log does not show the session's {unseen}", "dim")

    def _proxy_listen(self, ev: Mapping[str, Any]) -> str:
        text = self.label("listening", listen=ev["listen"], upstream=ev["upstream"])
        if ev.get("sandbox"):
            sandbox = self.label("sandbox", user=ev["user"], password=ev["sandbox_password"])
            text += f"\n{INDENT}{sandbox}\n{INDENT}" + self.label("try", command=ev["try_cmd"])
        return self.paint(text, "bold")

    def _proxy_exposed(self, ev: Mapping[str, Any]) -> str:
        text = (
            self.label("exposed", listen=ev["listen"]) + f"\n{INDENT}" + self.label("exposed_fix")
        )
        return self.paint(text, "yellow")

    def _metrics_listen(self, ev: Mapping[str, Any]) -> str:
        return self.paint(self.label("metrics_listen", listen=ev["listen"]), "dim")

    def _route_selected(self, ev: Mapping[str, Any]) -> str:
        fields = {k: ev[k] for k in ("user", "host", "port", "upstream")}
        return self.paint(self.label("route_selected", **fields), "cyan")

    def _route_refused(self, ev: Mapping[str, Any]) -> str:
        text = self.label("route_refused", kind=ev["kind"], reason=ev["reason"])
        return self.paint(text, "yellow")

    def _access_refused(self, ev: Mapping[str, Any]) -> str:
        reason = reword("refusal", str(ev["reason"]), self.lang)
        return self.paint(self.label("refused", client=ev["client"], reason=reason), "yellow")

    def _tls_ca(self, ev: Mapping[str, Any]) -> str:
        ca = ev["ca"]
        state = self.label("ca_created" if ev.get("created") else "ca_uses")
        text = (
            self.label("tls_ca", state=state, ca=ca)
            + f"\n{INDENT}"
            + self.label("tls_ca_trust", ca=ca)
        )
        return self.paint(text, "dim")

    def _tls_insecure(self, ev: Mapping[str, Any]) -> str:
        return self.paint(self.label("insecure", upstream=ev["upstream"]), "yellow")

    def _proxy_internal_error(self, ev: Mapping[str, Any]) -> str:
        message = f": {ev['message']}" if ev.get("message") else ""
        victim = self.label("internal_victim") if ev.get("session") else ""
        text = self.label(
            "internal_error",
            error=ev["error"],
            message=message,
            where=ev.get("where"),
            victim=victim,
        )
        return self.paint(text, "red")

    def _transfer_start(self, ev: Mapping[str, Any]) -> str:
        arrow = "⇣" if ev.get("direction") == "download" else "⇡"
        mode = ev.get("mode") or {}
        detail = self.label(
            "transfer_mode",
            client=self.word("mode", mode.get("client")),
            server=self.word("mode", mode.get("server")),
            type=ev.get("type"),
            rest=f", REST {ev['rest']}" if ev.get("rest") else "",
        )
        return f"{arrow} {ev['command']} {ev.get('path', '')}  " + self.paint(detail, "dim")

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
        text = self.label(
            "transfer_end",
            mark="✓" if ok else "✗",
            command=ev["command"],
            path=ev.get("path", ""),
            size=_human_bytes(moved),
            ms=f"{duration:.0f}",
            rate=_rate(moved, duration),
            outcome=ev["outcome"],
        )
        return self.paint(text, "green" if ok else "red")

    def _session_close(self, ev: Mapping[str, Any]) -> str:
        seconds = float(ev.get("duration_ms") or 0) / 1000
        return self.label(
            "session_closed",
            seconds=f"{seconds:.1f}",
            commands=self.count("commands", int(ev.get("commands") or 0)),
            transfers=self.count("transfers", int(ev.get("transfers") or 0)),
            size=_human_bytes(int(ev.get("bytes") or 0)),
            reason=self.word("reason", ev.get("reason")),
        )

    def _session_summary(self, ev: Mapping[str, Any]) -> str:
        cause = ev.get("root_cause")
        outcome = str(ev.get("outcome_text") or "")
        if not cause:
            healthy = (outcome[:1].upper() + outcome[1:] + ". ") if outcome else ""
            return INDENT + self.paint(healthy + self.label("no_problems"), "green")
        wrap = textwrap.TextWrapper(width=WIDTH, initial_indent=INDENT, subsequent_indent=INDENT)
        lines = [outcome[:1].upper() + outcome[1:] + "."] if outcome else []
        lines.append(self.paint(self.label("most_likely", title=cause["title"]), "bold"))
        others = ev.get("diagnoses", [])[1:4]
        lines += [
            self.label(
                "also",
                severity=self.word("severity", d["severity"]),
                rule=d["rule"],
                title=d["title"],
            )
            for d in others
        ]
        return "\n".join(wrap.fill(line) for line in lines)

    def _report_written(self, ev: Mapping[str, Any]) -> str:
        return f"⇄ report written {ev.get('path')}"

    def _report_failed(self, ev: Mapping[str, Any]) -> str:
        return self.paint(f"✗ report not written to {ev.get('path')}: {ev.get('error')}", "red")

    def _replay_listen(self, ev: Mapping[str, Any]) -> str:
        greeting = ev.get("greeting") or self.label("replay_no_greeting")
        commands = self.count("commands", ev["commands"])
        lines = [
            self.label("replay_listening", listen=ev["listen"], timing=ev["timing"]),
            self.label(
                "replay_session",
                session=ev["session"],
                input=ev["input"],
                greeting=greeting,
                commands=commands,
            ),
        ]
        if ev.get("flexible"):
            lines.append(self.label("replay_flexible", verbs=" ".join(ev["flexible"])))
        lines += [self.label("replay_transfer", transfer=t) for t in ev.get("transfers", ())]
        if ev.get("closes"):
            lines.append(self.label("replay_closes"))
        if len(ev.get("sessions", ())) > 1:
            lines.append(self.label("replay_others", sessions=" ".join(ev["sessions"])))
        return self.paint(lines[0], "bold") + "".join(f"\n{INDENT}{line}" for line in lines[1:])

    def _replay_unmatched(self, ev: Mapping[str, Any]) -> str:
        expected = ev.get("expected") or self.label("replay_end")
        text = self.label("replay_unmatched", actual=ev["actual"], expected=expected)
        return self.paint(text, "red")

    def _generic(self, ev: Mapping[str, Any]) -> str:
        skip = {"event", "timestamp", "level", "session"}
        detail = " ".join(f"{k}={v}" for k, v in ev.items() if k not in skip)
        return self.paint(f"· {ev.get('event')} {detail}", "dim")
