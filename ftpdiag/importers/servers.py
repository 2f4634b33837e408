"""Server logs: vsftpd (``log_ftp_protocol=YES`` and its ``OK LOGIN``/``FAIL DOWNLOAD`` lines),
ProFTPD (ExtendedLog in the default format, SystemLog, TLSLog) and Pure-FTPd (syslog, with
``-d`` debug lines). A server log interleaves clients: sessions are told apart by the client's
address and the server's process id, and a ``CONNECT``/``session opened`` line starts a new one.
"""

from __future__ import annotations

import re

from ftpdiag.importers.base import Collector, parse_time, text_format, unwrap
from ftpdiag.importers.builder import SessionBuilder
from ftpdiag.importers.errors import kind_of

_VSFTPD = re.compile(
    r"^(?P<when>\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}) \[pid (?P<pid>\d+)\] "
    r"(?:\[(?P<user>[^\]]*)\] )?"
    r"(?P<what>CONNECT|FTP command|FTP response|OK LOGIN|FAIL LOGIN|OK DOWNLOAD|FAIL DOWNLOAD"
    r"|OK UPLOAD|FAIL UPLOAD|OK MKDIR|FAIL MKDIR|OK DELETE|FAIL DELETE|OK RENAME|FAIL RENAME)"
    r': Client "(?P<client>[^"]*)"(?:, "(?P<text>.*)")?$'
)
_PROFTPD_EXT = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<when>[^\]]+)\] "(?P<command>[^"]*)" '
    r"(?P<code>\d{3}|-) (?P<bytes>\d+|-)"
)
_PROFTPD_SYS = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \S+ proftpd\[(?P<pid>\d+)\] \S+ "
    r"\((?P<client>[^\[)]+)\[[^\]]*\]\): (?P<text>.*)$"
)
_PROFTPD_TLS = re.compile(r"^(?P<when>\S+ \S+) mod_tls/[\d.]+\[(?P<pid>\d+)\]: (?P<text>.*)$")
_PURE = re.compile(
    r"^(?:\w{3} +\d+ \d\d:\d\d:\d\d \S+ )?pure-ftpd(?:\[\d+\])?: "
    r"\((?P<user>[^@]*)@(?P<client>[^)]+)\) "
    r"\[(?P<level>[A-Z]+)\] (?P<text>.*)$"
)
_PURE_COMMAND = re.compile(r"^Command \[(\w+)\] \[(.*)\]$")
_PURE_REPLY = re.compile(r"^(\d{3})[ -](.*)$")
_ALL = (_VSFTPD, _PROFTPD_EXT, _PROFTPD_SYS, _PROFTPD_TLS, _PURE)


class _ByClient:
    """One builder per client (and process), a new one when the log shows a new connection."""

    def __init__(self, out: Collector) -> None:
        self.out = out
        self.open: dict[str, SessionBuilder] = {}

    def get(self, key: str, new: bool = False, client: str | None = None) -> SessionBuilder:
        """The session of ``key`` (a client address, or a process id where the log has one)."""
        if new or key not in self.open:
            self.open[key] = self.out.new()
        builder = self.open[key]
        builder.client = builder.client or client or (None if key.isdigit() else key)
        return builder


def _score(lines: list[str]) -> float:
    body = [line for line in lines if line.strip()]
    hits = sum(1 for line in body if any(p.match(line) for p in _ALL))
    return 0.9 if body and hits / len(body) > 0.5 else 0.0


def _vsftpd(m: re.Match[str], sessions: _ByClient) -> None:
    at = parse_time(m.group("when"), ("%a %b %d %H:%M:%S %Y",))
    what, client, text = m.group("what"), m.group("client"), m.group("text") or ""
    builder = sessions.get(client, new=what == "CONNECT")
    if what == "FTP command":
        builder.command(text.replace("<password>", "****"), at)
    elif what == "FTP response":
        for part in text.split("\\r\\n") if "\\r\\n" in text else [text]:
            builder.reply_line(part, at)
    elif what.startswith("FAIL") and what != "FAIL LOGIN" and builder.empty:
        builder.unseen.append("start")


def _proftpd_ext(m: re.Match[str], sessions: _ByClient) -> None:
    at = parse_time(m.group("when"), ("%d/%b/%Y:%H:%M:%S %z",))
    builder = sessions.get(m.group("client"), new=m.group("command").upper().startswith("USER"))
    command = re.sub(r"^PASS .*", "PASS ****", m.group("command"))
    builder.command(command, at)
    if m.group("code") != "-":
        if m.group("bytes").isdigit() and command.split(" ")[0] in ("RETR", "STOR"):
            builder.reply(150, "(data connection; not in the log)", at)
            builder.transferred(int(m.group("bytes")))
        builder.reply(int(m.group("code")), "(text not in the ExtendedLog)", at)


def _proftpd_sys(m: re.Match[str], sessions: _ByClient) -> None:
    at = parse_time(m.group("when"), ("%Y-%m-%d %H:%M:%S",))
    text = m.group("text")
    builder = sessions.get(m.group("pid"), new="session opened" in text, client=m.group("client"))
    if "Login failed" in text or "no such user" in text.lower():
        user = text.split(" ")[1] if text.startswith("USER ") else ""
        builder.command(f"USER {user}".strip(), at)
        builder.forget_pending()
        builder.command("PASS ****", at)
        builder.reply(530, text, at)
    elif "session closed" in text:
        builder.close("FTP session closed", at)
    elif "unable to" in text.lower() or "error" in text.lower():
        builder.client_error(kind_of(text), text, "proftpd", at)


def _proftpd_tls(m: re.Match[str], sessions: _ByClient) -> None:
    """mod_tls's TLSLog: handshakes the client broke off, logins refused without TLS."""
    at = parse_time(m.group("when").split(",")[0], ("%Y-%m-%d %H:%M:%S",))
    text, builder = m.group("text"), sessions.get(m.group("pid"))
    if "required but absent for authentication" in text:
        # mod_tls answers the USER it denies with this 550 (its TLSLog says why, not what).
        builder.command("USER", at)
        builder.reply(550, "SSL/TLS required on the control channel", at)
    elif text.lower().startswith("unable to"):
        builder.client_error("tls", text, "proftpd TLSLog", at, channel="control")


def _pure(m: re.Match[str], sessions: _ByClient) -> None:
    client, text, level = m.group("client"), m.group("text"), m.group("level")
    builder = sessions.get(client, new=text.startswith("New connection from"))
    if command := _PURE_COMMAND.match(text):
        arg = "****" if command.group(1).lower() == "pass" else command.group(2)
        builder.command(f"{command.group(1).upper()} {arg}".strip())
    elif level == "DEBUG" and (reply := _PURE_REPLY.match(text)):
        builder.reply_line(f"{reply.group(1)} {reply.group(2)}")
    elif text.startswith("Authentication failed for user"):
        if builder.awaiting != "PASS":
            builder.unseen.append("start")
    elif text.startswith(("Logout", "Timeout")):
        builder.close(text, None)


def _parse(lines: list[str], out: Collector) -> None:
    sessions = _ByClient(out)
    # mod_tls continues OpenSSL's words on indented lines: join them back.
    for line in unwrap(lines, lambda text: any(p.match(text) for p in _ALL)):
        if m := _VSFTPD.match(line):
            _vsftpd(m, sessions)
        elif m := _PROFTPD_EXT.match(line):
            _proftpd_ext(m, sessions)
        elif m := _PROFTPD_SYS.match(line):
            _proftpd_sys(m, sessions)
        elif m := _PROFTPD_TLS.match(line):
            _proftpd_tls(m, sessions)
        elif m := _PURE.match(line):
            _pure(m, sessions)


SERVERS = text_format("server", "vsftpd, ProFTPD and Pure-FTPd logs", _score, _parse)
