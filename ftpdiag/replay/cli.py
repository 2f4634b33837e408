"""``ftpdiag replay``: serve a recorded session again, until interrupted."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ftpdiag.i18n import add_lang_argument, error_line, label, resolve


def run(args: argparse.Namespace) -> int:
    from ftpdiag.analyze import read_records
    from ftpdiag.capture import CaptureError
    from ftpdiag.logconfig import configure, emit
    from ftpdiag.replay.script import ScriptError, build_script, sessions_in
    from ftpdiag.replay.server import ReplayOptions, ReplayServer

    fmt = args.log_format or ("console" if sys.stderr.isatty() else "json")
    configure(sys.stderr, fmt, lang=resolve(args.lang))
    try:
        records = read_records([str(args.input)])
        script = build_script(records, args.session)
    except OSError as exc:
        message = label("cli.cannot_read", path=args.input, reason=exc.strerror)
        print(error_line(message), file=sys.stderr)
        return 2
    except CaptureError as exc:  # its message names the file
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(error_line(label("cli.not_a_log", path=args.input)), file=sys.stderr)
        return 2
    except ScriptError as exc:
        print(error_line(f"{args.input}: {exc}"), file=sys.stderr)
        return 2
    options = ReplayOptions(
        args.timing, args.speed, args.keep_addresses, Path(args.input).resolve().parent
    )
    try:
        server = ReplayServer(script, args.listen, options, emit)
    except OSError as exc:
        address = f"{args.listen[0]}:{args.listen[1]}"
        print(error_line(label("cli.cannot_listen", address=address, reason=exc)), file=sys.stderr)
        return 2
    host, port = server.address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    emit(
        "replay.listen",
        {
            "listen": shown,
            "input": str(args.input),
            "sessions": sessions_in(records),
            "timing": args.timing,
            **script.summary(),
        },
    )
    if not ipaddress.ip_address(host).is_loopback:
        emit("proxy.exposed", {"listen": shown, "hint": label("hint.replay_exposed")})
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(label("cli.not_number", text=text)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(label("cli.not_positive", text=text))
    return value


def register(sub: Any) -> None:
    from ftpdiag.cli import _listen_arg

    p = sub.add_parser(
        "replay",
        help=label("help.replay"),
        description=label("help.replay_description"),
    )
    p.add_argument("input", help=label("help.replay_input"))
    p.add_argument("--session", metavar="ID", help=label("help.replay_session"))
    p.add_argument(
        "--listen",
        type=_listen_arg,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help=label("help.replay_listen"),
    )
    p.add_argument(
        "--timing",
        choices=("fast", "recorded"),
        default="fast",
        help=label("help.replay_timing"),
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help=label("help.replay_speed"),
    )
    p.add_argument(
        "--keep-addresses",
        action="store_true",
        help=label("help.replay_keep_addresses"),
    )
    p.add_argument("--log-format", choices=("console", "json"), help=label("help.terminal_format"))
    add_lang_argument(p)
    p.set_defaults(func=run)
