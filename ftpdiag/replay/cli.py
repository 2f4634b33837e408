"""``ftpdiag replay``: serve a recorded session again, until interrupted."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def run(args: argparse.Namespace) -> int:
    from ftpdiag.analyze import read_records
    from ftpdiag.capture import CaptureError
    from ftpdiag.logconfig import configure, emit
    from ftpdiag.replay.script import ScriptError, build_script, sessions_in
    from ftpdiag.replay.server import ReplayOptions, ReplayServer

    configure(sys.stderr, args.log_format or ("console" if sys.stderr.isatty() else "json"))
    try:
        records = read_records([str(args.input)])
        script = build_script(records, args.session)
    except OSError as exc:
        print(f"ftpdiag: error: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    except CaptureError as exc:  # its message names the file
        print(f"ftpdiag: error: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(
            f"ftpdiag: error: {args.input}: not a log or a capture ftpdiag reads", file=sys.stderr
        )
        return 2
    except ScriptError as exc:
        print(f"ftpdiag: error: {args.input}: {exc}", file=sys.stderr)
        return 2
    options = ReplayOptions(
        args.timing, args.speed, args.keep_addresses, Path(args.input).resolve().parent
    )
    try:
        server = ReplayServer(script, args.listen, options, emit)
    except OSError as exc:
        print(
            f"ftpdiag: error: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}",
            file=sys.stderr,
        )
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
        emit("proxy.exposed", {"listen": shown, "hint": "the replay listens beyond loopback"})
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
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def register(sub: Any) -> None:
    from ftpdiag.cli import _listen_arg

    p = sub.add_parser(
        "replay",
        help="serve a recorded session again as a fake FTP server",
        description="Serve a recorded session again: the same replies, data and failures.",
    )
    p.add_argument("input", help="anything `ftpdiag analyze` reads (e.g. a --log-file)")
    p.add_argument("--session", metavar="ID", help="the session to replay (default: the first)")
    p.add_argument(
        "--listen",
        type=_listen_arg,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where clients connect (default 127.0.0.1 on a free port)",
    )
    p.add_argument(
        "--timing",
        choices=("fast", "recorded"),
        default="fast",
        help="replies at once (default) or at the recorded latencies",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="with --timing recorded: play X times faster (default 1)",
    )
    p.add_argument(
        "--keep-addresses",
        action="store_true",
        help="advertise the recorded passive addresses unchanged (reproduces NAT faults)",
    )
    p.add_argument("--log-format", choices=("console", "json"), help="terminal format")
    p.set_defaults(func=run)
