"""``ftpdiag demo``: a scripted session through the proxy on the embedded sandbox.

The sandbox server is a pyftpdlib handler that aborts downloads of ``big.bin`` after
``CUT_AFTER`` bytes (pyftpdlib answers 426), the proxy runs in the main thread's reactor, and
an ftplib client in a thread logs in, asks SIZE and RETR big.bin, and quits. The console shows
each command and reply with the diagnoses inline: the 220 greeting, then the 426 explained
with the bytes that got through and how to resume. It takes a second or two.
"""

from __future__ import annotations

import argparse
import ftplib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from pyftpdlib.handlers import DTPHandler, FTPHandler

from ftpdiag.i18n import add_lang_argument, error_line, label, resolve

CUT_AFTER = 1 << 20
DEMO_FILE = "big.bin"
CLIENT_TIMEOUT = 10.0
DEADLINE = 20.0


class AbortingDTPHandler(DTPHandler):  # type: ignore[misc]
    """Sends at most ``CUT_AFTER`` bytes of big.bin, then closes the data connection as if
    the client had gone: pyftpdlib replies ``426 Transfer aborted; N bytes transmitted.``"""

    def send(self, data: bytes) -> int:
        name = str(getattr(self.file_obj, "name", ""))
        if self.receive or not name.endswith(DEMO_FILE):
            return int(super().send(data))
        left = CUT_AFTER - self.tot_bytes_sent
        if left > 0:
            return int(super().send(data[:left]))
        if not getattr(self, "_cut", False):
            self._cut = True
            self.del_channel()  # no more writes; close from the loop, not inside send()
            self.call_later(0, self.handle_close)
        return 0


class AbortingHandler(FTPHandler):  # type: ignore[misc]
    """The sandbox's handler for the demo: big.bin downloads stop with 426 after 1 MiB."""

    dtp_handler = AbortingDTPHandler
    use_sendfile = False  # sendfile(2) would bypass send() and the cut


def _script(address: tuple[str, int], user: str, password: str, outcome: list[str]) -> None:
    """The scripted client: login, binary mode, SIZE, the download that fails, QUIT."""
    try:
        ftp = ftplib.FTP()
        ftp.connect(address[0], address[1], timeout=CLIENT_TIMEOUT)
        ftp.login(user, password)
        ftp.voidcmd("TYPE I")
        ftp.size(DEMO_FILE)
        try:
            ftp.retrbinary(f"RETR {DEMO_FILE}", lambda _: None)
        except ftplib.error_temp as exc:
            outcome.append(str(exc)[:3])
        ftp.quit()
    except (ftplib.Error, OSError, EOFError) as exc:
        outcome.append(f"client error: {exc!r}")


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from ftpdiag.logconfig import configure, emit
    from ftpdiag.proxy.control import ProxySettings
    from ftpdiag.proxy.server import start_proxy
    from ftpdiag.sandbox import SANDBOX_PASSWORD, SANDBOX_USER, ServerThread, seed_sandbox

    lang = resolve(args.lang)
    configure(sys.stdout, "console", verbosity=1 if args.verbose else 0, lang=lang)
    seen: set[str] = set()
    outcome: list[str] = []
    broken_pipe: list[bool] = []

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    def sink(event: str, fields: dict[str, Any]) -> None:
        if broken_pipe:
            return
        try:
            emit(event, fields)
        except BrokenPipeError:  # e.g. ftpdiag demo | head: stop quietly
            broken_pipe.append(True)
            reactor.callLater(0, stop)
            return
        if event == "diagnosis":
            seen.add(str(fields.get("rule")))
        elif event == "session.summary":
            reactor.callLater(0, stop)

    def client_done() -> None:
        # The summary normally stops the reactor at once; this bounds a client that failed.
        reactor.callLater(2.0, stop)

    def script(address: tuple[str, int]) -> None:
        try:
            _script(address, SANDBOX_USER, SANDBOX_PASSWORD, outcome)
        finally:
            reactor.callFromThread(client_done)  # type: ignore[attr-defined]

    def give_up() -> None:
        outcome.append(label("demo.deadline", lang, seconds=f"{DEADLINE:g}"))
        stop()

    with tempfile.TemporaryDirectory(prefix="ftpdiag-demo-") as tmp:
        root = Path(tmp)
        seed_sandbox(root)
        with ServerThread(root, handler=AbortingHandler) as sandbox:
            settings = ProxySettings(upstream=sandbox.address, lang=lang)
            proxy = start_proxy(reactor, ("127.0.0.1", 0), settings, sink)
            intro = label(
                "demo.intro",
                lang,
                proxy=proxy.address,
                sandbox=f"{sandbox.address[0]}:{sandbox.address[1]}",
                file=DEMO_FILE,
                bytes=CUT_AFTER,
            )
            print(intro + "\n", flush=True)
            client = threading.Thread(
                target=script, args=(proxy.host_port,), name="ftpdiag-demo-client", daemon=True
            )
            reactor.callWhenRunning(client.start)
            timer = reactor.callLater(DEADLINE, give_up)
            reactor.run()
            if timer.active():
                timer.cancel()
            client.join(CLIENT_TIMEOUT)
    if broken_pipe:
        # Python would complain again when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    missing = {"greeting.ready", "transfer.aborted"} - seen
    if missing or outcome != ["426"]:
        message = label("demo.incomplete", lang, missing=sorted(missing), outcome=outcome)
        print(error_line(message, lang), file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help=label("help.demo"), description=label("help.demo"))
    p.add_argument("-v", "--verbose", action="store_true", help=label("help.demo_verbose"))
    add_lang_argument(p)
    p.set_defaults(func=run)
