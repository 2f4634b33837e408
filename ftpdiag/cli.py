"""The ``ftpdiag`` command: the only place that builds endpoints and runs the reactor."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ftpdiag import __version__
from ftpdiag.core.config import SessionConfig
from ftpdiag.rules.catalog import default_lang

if TYPE_CHECKING:
    from ftpdiag.proxy.tls import ProxyTLS
    from ftpdiag.report.collect import ReportSink

DEFAULT_LISTEN = "127.0.0.1:2121"


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit status 2, never a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ftpdiag: error: {message}\n")


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or (with a default port) ``HOST``; ports 0..65535."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise argparse.ArgumentTypeError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write IPv6 addresses as [ADDR]:PORT")
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r}: missing host")
    if not port_text:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"{text!r}: missing :PORT")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def _listen_arg(text: str) -> tuple[str, int]:
    host, port = parse_hostport(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: listen on a numeric address") from None
    return host, port


def _upstream_arg(text: str) -> tuple[str, int]:
    return parse_hostport(text, default_port=21)


def _cidr_arg(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR network") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _add_proxy(sub: Any) -> None:
    p = sub.add_parser(
        "proxy", help="run the diagnostic proxy", description="Run the diagnostic proxy."
    )
    p.add_argument(
        "--listen",
        type=_listen_arg,
        default=_listen_arg(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where clients connect (default {DEFAULT_LISTEN}; IPv6 as [::1]:2121)",
    )
    p.add_argument(
        "--upstream",
        type=_upstream_arg,
        metavar="HOST[:PORT]",
        help="the FTP server (default: a built-in pyftpdlib sandbox)",
    )
    p.add_argument("--log-file", type=Path, metavar="PATH", help="append JSON lines to PATH")
    p.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="terminal format (default: console on a TTY, else json)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="explain every reply; show data-channel detail"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on the terminal"
    )
    p.add_argument(
        "--upstream-mode",
        choices=("same", "passive", "active", "auto"),
        default="same",
        help="data mode toward the server (default: the client's)",
    )
    p.add_argument(
        "--use-pasv-address",
        action="store_true",
        help="dial the address inside 227 replies instead of the control peer",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="upstream connect timeout (default 10)",
    )
    p.add_argument(
        "--greeting-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="how long to wait for the server's greeting (default 10)",
    )
    p.add_argument(
        "--data-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="how long a data connection may take to appear (default 30)",
    )
    p.add_argument(
        "--data-stall-timeout",
        type=_positive,
        default=300.0,
        metavar="S",
        help="end a data connection on which nothing moved this long (default 300; 0: never)",
    )
    p.add_argument(
        "--idle-timeout",
        type=_positive,
        default=0.0,
        metavar="S",
        help="close sessions idle this long (default 0: never)",
    )
    p.add_argument(
        "--max-line",
        type=int,
        default=8192,
        metavar="BYTES",
        help="longest control line accepted (default 8192)",
    )
    p.add_argument(
        "--allow-client",
        type=_cidr_arg,
        action="append",
        default=[],
        metavar="CIDR",
        help="accept clients only from these networks (repeatable)",
    )
    p.add_argument(
        "--max-sessions", type=int, default=0, metavar="N", help="refuse beyond N sessions"
    )
    p.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=0,
        metavar="N",
        help="refuse beyond N sessions from one client address",
    )
    p.add_argument(
        "--lang", choices=("en", "vi"), help="language of explanations (default from the locale)"
    )
    p.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="write an HTML report of each session to DIR when it closes",
    )
    rec = p.add_argument_group("recording data (for ftpdiag replay)")
    rec.add_argument(
        "--record-data",
        type=Path,
        metavar="DIR",
        help="keep the bytes the server sends on each data connection in DIR (files 0600)",
    )
    rec.add_argument(
        "--record-data-max",
        type=int,
        default=64 << 20,
        metavar="BYTES",
        help="keep at most BYTES of each transfer (default 64 MiB)",
    )
    rec.add_argument(
        "--record-tls-data",
        action="store_true",
        help="also keep the bytes of TLS-protected (PROT P) data connections",
    )
    tls = p.add_argument_group("TLS (FTPS)")
    tls.add_argument(
        "--listen-tls",
        choices=("off", "explicit", "implicit"),
        default="explicit",
        help="toward clients: refuse AUTH TLS, accept it (default), or TLS from the start",
    )
    tls.add_argument(
        "--upstream-tls",
        choices=("auto", "off", "explicit", "implicit"),
        default="auto",
        help="toward the server: as the client does (default), never,"
        " always via AUTH TLS, or TLS from the start (port 990 style)",
    )
    tls.add_argument(
        "--tls",
        choices=("intercept", "passthrough"),
        default="intercept",
        help="terminate TLS and keep diagnosing (default), or relay it unread",
    )
    tls.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="certificate chain to show clients (default: minted by the local CA)",
    )
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    tls.add_argument(
        "--upstream-ca",
        type=Path,
        metavar="PEM",
        help="extra CA certificates to trust for the server",
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (logged as a warning)",
    )
    p.set_defaults(func=run_proxy)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftpdiag", description="A live FTP session diagnostic proxy.")
    parser.add_argument("--version", action="version", version=f"ftpdiag {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    _add_proxy(sub)
    from ftpdiag import analyze, demo, knowledge_cli
    from ftpdiag.replay import cli as replay_cli
    from ftpdiag.report import cli as report_cli

    knowledge_cli.register(sub)
    analyze.register(sub)
    replay_cli.register(sub)
    report_cli.register(sub)
    demo.register(sub)
    return parser


def _configure_logging(args: argparse.Namespace) -> tuple[IO[str] | None, ReportSink | None]:
    from ftpdiag.logconfig import configure, emit
    from ftpdiag.report.collect import ReportSink

    log_file = args.log_file.open("a", encoding="utf-8", buffering=1) if args.log_file else None
    fmt = args.log_format or ("console" if sys.stderr.isatty() else "json")
    reports = None
    if args.report_dir:
        reports = ReportSink(args.report_dir, args.lang or default_lang(), emit, background=True)
    configure(
        sys.stderr,
        fmt,
        log_file,
        verbosity=-1 if args.quiet else (1 if args.verbose else 0),
        outputs=[reports] if reports else (),
    )
    return log_file, reports


def _proxy_tls(args: argparse.Namespace, upstream: tuple[str, int]) -> ProxyTLS:
    """The certificate shown to clients and the trust toward the server, from the flags."""
    from ftpdiag.certs import config_dir, ensure_ca, mint_leaf
    from ftpdiag.logconfig import emit
    from ftpdiag.proxy.tls import ClientFacingTLS, ProxyTLS, UpstreamTLS

    client_facing = None
    if args.listen_tls != "off" and args.tls == "intercept":
        if args.tls_cert is not None:
            client_facing = ClientFacingTLS(args.tls_cert, args.tls_key or args.tls_cert)
        else:
            directory = config_dir()
            ca, created = ensure_ca(directory)
            names = sorted(
                {args.listen[0], "127.0.0.1", "localhost"}, key=lambda n: n != args.listen[0]
            )
            leaf = mint_leaf(ca, names, directory)
            client_facing = ClientFacingTLS(leaf.cert, leaf.key)
            emit(
                "tls.ca",
                {
                    "ca": str(ca.cert),
                    "created": created,
                    "hint": f"clients must trust {ca.cert} (curl --cacert, lftp ssl:ca-file)",
                },
            )
    if args.insecure:
        emit("tls.insecure", {"upstream": upstream[0]})
    return ProxyTLS(client_facing, UpstreamTLS(upstream[0], not args.insecure, args.upstream_ca))


def run_proxy(args: argparse.Namespace) -> int:
    from twisted.internet import error, reactor

    from ftpdiag.logconfig import emit
    from ftpdiag.proxy.access import AccessPolicy
    from ftpdiag.proxy.control import ProxySettings
    from ftpdiag.proxy.data import DataTimeouts
    from ftpdiag.proxy.recording import DataRecording
    from ftpdiag.proxy.server import start_proxy
    from ftpdiag.proxy.upstream import UpstreamConnector

    try:
        log_file, reports = _configure_logging(args)
    except OSError as exc:
        print(f"ftpdiag: error: cannot open log file: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        tls = _proxy_tls(args, args.upstream or ("127.0.0.1", 0))
    except (OSError, ValueError) as exc:
        print(f"ftpdiag: error: TLS set-up failed: {exc}", file=sys.stderr)
        return 2
    sandbox = tmp = None
    upstream = args.upstream
    if upstream is None:
        from ftpdiag.sandbox import SANDBOX_PASSWORD, SANDBOX_USER, start_sandbox

        sandbox, tmp = start_sandbox()
        upstream = sandbox.address
    config = SessionConfig(
        client_tls=args.listen_tls if tls.client_facing is not None else "off",
        upstream_tls=args.upstream_tls,
        tls_passthrough=args.tls == "passthrough",
        upstream_mode=args.upstream_mode,
        use_pasv_address=args.use_pasv_address,
        max_line=args.max_line,
        greeting_timeout=args.greeting_timeout,
        idle_timeout=args.idle_timeout,
    )
    settings = ProxySettings(
        tls=tls,
        lang=args.lang or default_lang(),
        upstream=upstream,
        session=config,
        data=DataTimeouts(connect=args.data_timeout, stall=args.data_stall_timeout),
        access=AccessPolicy(
            tuple(args.allow_client), args.max_sessions, args.max_sessions_per_client
        ),
        record_data=(
            DataRecording(args.record_data, args.record_data_max, args.record_tls_data)
            if args.record_data is not None
            else None
        ),
    )
    connector = UpstreamConnector(reactor, timeout=args.connect_timeout)
    try:
        proxy = start_proxy(reactor, args.listen, settings, emit, connector)
    except error.CannotListenError as exc:
        print(
            f"ftpdiag: error: cannot listen on {args.listen[0]}:{args.listen[1]}:"
            f" {exc.socketError}",
            file=sys.stderr,
        )
        if sandbox is not None:
            sandbox.stop()
        return 2
    listen = proxy.address
    fields: dict[str, Any] = {"listen": listen, "upstream": f"{upstream[0]}:{upstream[1]}"}
    if sandbox is not None:
        fields.update(
            sandbox=True,
            user=SANDBOX_USER,
            sandbox_password=SANDBOX_PASSWORD,
            anonymous=True,
            try_cmd=f"curl ftp://{SANDBOX_USER}:{SANDBOX_PASSWORD}@{listen}/README.txt",
        )
    emit("proxy.listen", fields)
    if not args.allow_client and not ipaddress.ip_address(args.listen[0]).is_loopback:
        emit(
            "proxy.exposed",
            {"listen": listen, "hint": "listening beyond loopback without --allow-client"},
        )
    reactor.run()
    if sandbox is not None:
        sandbox.stop()
        assert tmp is not None
        tmp.cleanup()
    if reports is not None:
        reports.finish()  # the reports of the sessions that shutdown closed, and their lines
    if log_file is not None:
        with contextlib.suppress(OSError):  # a full disk was already reported by the sink
            log_file.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ftpdiag codes | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
