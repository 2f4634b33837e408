"""What real servers say, known word for word: a server's own message names its fault better
than the generic meaning of its reply code (vsftpd's ``500 OOPS: ... writable root inside
chroot()`` is no syntax error), and the first bytes of a peer that is no FTP server at all
(an SSH banner, an HTTP answer, a mail server's 220) name what it is.

The messages are data (``server_messages.toml``); this module only matches them. A finding from
here ``overrides`` the other findings of the same reply: one fault, one headline.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ftpdiag.rules.finding import Check, Finding, handles
from ftpdiag.rules.view import SessionView

#: Where a message can be seen: a reply to a command, the greeting, a non-reply greeting line,
#: the first bytes of a client.
WHERE = frozenset({"reply", "greeting", "line", "client"})


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """One known message: who sends it, how to recognise it, the rule that explains it."""

    server: str
    pattern: re.Pattern[str]
    rule: str
    codes: frozenset[int]
    where: str


@cache
def _data() -> dict[str, Any]:
    return tomllib.loads(
        resources.files("ftpdiag.rules").joinpath("server_messages.toml").read_text("utf-8")
    )


@cache
def silent_ports() -> dict[int, str]:
    """Port → the rule of the peer that usually listens there and never greets first."""
    return {port: rule for rule, ports in _data()["silent_ports"].items() for port in ports}


@cache
def known_messages() -> tuple[ServerMessage, ...]:
    """``server_messages.toml``, compiled, in file order (validated by the tests)."""
    raw = _data()
    return tuple(
        ServerMessage(
            server=m["server"],
            pattern=re.compile(m["pattern"], re.I | re.M),
            rule=m["rule"],
            codes=frozenset(m.get("codes", ())),
            where=m.get("where", "reply"),
        )
        for m in raw["message"]
    )


def match(text: str, code: int | None, where: str) -> ServerMessage | None:
    """The first known message that ``text`` (with reply ``code``) is, seen ``where``."""
    for message in known_messages():
        if message.where != where or (message.codes and code not in message.codes):
            continue
        if message.pattern.search(text):
            return message
    return None


@handles("reply", "protocol.malformed_reply", "greeting.timeout", "command", "control.closed")
def server_messages(event: str, f: dict[str, Any], view: SessionView) -> Iterator[Finding]:
    """A reply (or a greeting line that is not one, RFC 959 §4.2) whose words are known, or a
    silent greeting (RFC 959 §5.4: 220 comes first) on the port of a peer that waits to be
    spoken to."""
    text = str(f.get("text") or "")
    if event == "command" and view.commands == 0:  # an SFTP client says SSH-2.0-... first
        found = match(f"{f.get('verb')} {f.get('arg') or ''}", None, "client")
        if found is not None:
            yield Finding(found.rule, None, {"text": str(f.get("verb"))[:40]}, overrides=True)
        return
    if event == "control.closed":  # a TLS ClientHello never ends a line
        head = str(f.get("client_head") or "")
        found = match(head, None, "client") if head and view.commands == 0 else None
        if found is not None:
            yield Finding(found.rule, None, {"text": repr(head[:8])}, overrides=True)
        return
    if event == "greeting.timeout":
        port = str(view.upstream or "").rpartition(":")[2]
        rule = silent_ports().get(int(port)) if port.isdigit() else None
        if rule is not None and not view.peer_identified:
            yield Finding(rule, None, {**f, "upstream": view.upstream}, overrides=True)
        return
    if event == "reply":
        code = int(f["code"])
        if "greeting" in (f.get("state") or ()):
            # A welcome banner may quote policies ("No anonymous login"): only a refusing
            # greeting is read as a reply.
            found = match(text, code, "greeting") or (
                match(text, code, "reply") if code >= 400 else None
            )
        else:  # a success that mentions a limit ("quota", "exists") is no refusal
            found = match(text, code, "reply") if code >= 400 else None
        if found is not None:
            evidence = {
                "code": code,
                "text": text,
                "command": f.get("command"),
                "path": f.get("arg"),
                "server": found.server,
            }
            yield Finding(found.rule, code, evidence, overrides=True)
    elif event == "protocol.malformed_reply" and f.get("greeting"):
        found = match(text, None, "line")
        if found is not None:
            evidence = {"text": text[:80], "server": found.server, "upstream": view.upstream}
            yield Finding(found.rule, None, evidence, overrides=True)


SERVER_MESSAGE_CHECKS: tuple[Check, ...] = (server_messages,)
