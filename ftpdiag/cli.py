"""The ``ftpdiag`` command: the only place that builds endpoints and runs the reactor."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ftpdiag import __version__
from ftpdiag.core.addresses import show
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.routing import UpstreamPolicy
from ftpdiag.i18n import (
    add_lang_argument,
    error_line,
    label,
    lang_from_argv,
    resolve,
    reword,
    use,
)

if TYPE_CHECKING:
    from ftpdiag.proxy.tls import ProxyTLS
    from ftpdiag.report.collect import ReportSink

DEFAULT_LISTEN = "127.0.0.1:2121"


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, with its own words ("usage:") in the current language."""

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(
            usage, actions, groups, label("help_words.usage") if prefix is None else prefix
        )


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit status 2, never a usage dump; the
    words argparse adds itself (section titles, -h, usage) are in the current language."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._positionals.title = label("help_words.positionals")
        self._optionals.title = label("help_words.options")
        for action in self._actions:
            if isinstance(action, argparse._HelpAction):
                action.help = label("help_words.help")

    def _get_formatter(self) -> argparse.HelpFormatter:
        return _Formatter(prog=self.prog)

    def error(self, message: str) -> NoReturn:
        self.exit(2, error_line(reword("argparse", message)) + "\n")


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or (with a default port) ``HOST``; ports 0..65535."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise argparse.ArgumentTypeError(label("cli.missing_bracket", text=text))
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise argparse.ArgumentTypeError(label("cli.port_after_bracket", text=text))
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise argparse.ArgumentTypeError(label("cli.ipv6_brackets", text=text))
    if not host:
        raise argparse.ArgumentTypeError(label("cli.missing_host", text=text))
    if not port_text:
        if default_port is None:
            raise argparse.ArgumentTypeError(label("cli.missing_port", text=text))
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(label("cli.bad_port", text=text))
    return host, int(port_text)


def _listen_arg(text: str) -> tuple[str, int]:
    host, port = parse_hostport(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(label("cli.numeric_listen", text=text)) from None
    return host, port


def _metrics_arg(text: str) -> tuple[str, int]:
    """``PORT`` alone binds to loopback: metrics reveal who uses the proxy."""
    return _listen_arg(f"127.0.0.1:{text}" if text.isdigit() else text)


def _upstream_arg(text: str) -> tuple[str, int]:
    return parse_hostport(text, default_port=21)


def _cidr_arg(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(label("cli.bad_cidr", text=text)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(label("cli.not_number", text=text)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(label("cli.negative", text=text))
    return value


def _add_proxy(sub: Any) -> None:
    p = sub.add_parser(
        "proxy", help=label("help.proxy"), description=label("help.proxy_description")
    )
    p.add_argument(
        "--listen",
        type=_listen_arg,
        default=_listen_arg(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=label("help.listen", default=DEFAULT_LISTEN),
    )
    p.add_argument(
        "--upstream",
        type=_upstream_arg,
        metavar="HOST[:PORT]",
        help=label("help.upstream"),
    )
    p.add_argument("--log-file", type=Path, metavar="PATH", help=label("help.log_file"))
    p.add_argument(
        "--log-format",
        choices=("console", "json"),
        help=label("help.log_format"),
    )
    p.add_argument("-v", "--verbose", action="store_true", help=label("help.verbose"))
    p.add_argument("-q", "--quiet", action="store_true", help=label("help.quiet"))
    p.add_argument(
        "--upstream-mode",
        choices=("same", "passive", "active", "auto"),
        default="same",
        help=label("help.upstream_mode"),
    )
    p.add_argument(
        "--use-pasv-address",
        action="store_true",
        help=label("help.use_pasv_address"),
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help=label("help.connect_timeout"),
    )
    p.add_argument(
        "--greeting-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help=label("help.greeting_timeout"),
    )
    p.add_argument(
        "--data-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help=label("help.data_timeout"),
    )
    p.add_argument(
        "--data-stall-timeout",
        type=_positive,
        default=300.0,
        metavar="S",
        help=label("help.data_stall_timeout"),
    )
    p.add_argument(
        "--idle-timeout",
        type=_positive,
        default=0.0,
        metavar="S",
        help=label("help.idle_timeout"),
    )
    p.add_argument(
        "--max-line",
        type=int,
        default=8192,
        metavar="BYTES",
        help=label("help.max_line"),
    )
    p.add_argument(
        "--allow-client",
        type=_cidr_arg,
        action="append",
        default=[],
        metavar="CIDR",
        help=label("help.allow_client"),
    )
    p.add_argument(
        "--max-sessions", type=int, default=0, metavar="N", help=label("help.max_sessions")
    )
    p.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=0,
        metavar="N",
        help=label("help.max_sessions_per_client"),
    )
    add_lang_argument(p)
    p.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help=label("help.report_dir"),
    )
    rec = p.add_argument_group(label("help.record_group"))
    rec.add_argument(
        "--record-data",
        type=Path,
        metavar="DIR",
        help=label("help.record_data"),
    )
    rec.add_argument(
        "--record-data-max",
        type=int,
        default=64 << 20,
        metavar="BYTES",
        help=label("help.record_data_max"),
    )
    rec.add_argument(
        "--record-tls-data",
        action="store_true",
        help=label("help.record_tls_data"),
    )
    gateway = p.add_argument_group(label("help.gateway_group"))
    gateway.add_argument("--route-by-user", action="store_true", help=label("help.route_by_user"))
    gateway.add_argument(
        "--allow-upstream",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help=label("help.allow_upstream"),
    )
    gateway.add_argument(
        "--session-log-dir", type=Path, metavar="DIR", help=label("help.session_log_dir")
    )
    gateway.add_argument(
        "--metrics", type=_metrics_arg, metavar="[HOST:]PORT", help=label("help.metrics")
    )
    tls = p.add_argument_group(label("help.tls_group"))
    tls.add_argument(
        "--listen-tls",
        choices=("off", "explicit", "implicit"),
        default="explicit",
        help=label("help.listen_tls"),
    )
    tls.add_argument(
        "--upstream-tls",
        choices=("auto", "off", "explicit", "implicit"),
        default="auto",
        help=label("help.upstream_tls"),
    )
    tls.add_argument(
        "--tls",
        choices=("intercept", "passthrough"),
        default="intercept",
        help=label("help.tls"),
    )
    tls.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help=label("help.tls_cert"),
    )
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help=label("help.tls_key"))
    tls.add_argument(
        "--upstream-ca",
        type=Path,
        metavar="PEM",
        help=label("help.upstream_ca"),
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help=label("help.insecure"),
    )
    p.set_defaults(func=run_proxy)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftpdiag", description=label("help.description"))
    parser.add_argument(
        "--version",
        action="version",
        version=f"ftpdiag {__version__}",
        help=label("help_words.version"),
    )
    add_lang_argument(parser)  # also before the command: ftpdiag --lang vi demo
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
    from ftpdiag.logconfig import configure, emit, render_json
    from ftpdiag.report.collect import ReportSink

    log_file = args.log_file.open("a", encoding="utf-8", buffering=1) if args.log_file else None
    fmt = args.log_format or ("console" if sys.stderr.isatty() else "json")
    reports = None
    outputs: list[Any] = []
    if args.report_dir:
        reports = ReportSink(args.report_dir, args.lang, emit, background=True)
        outputs.append(reports)
    if args.session_log_dir:
        from ftpdiag.session_logs import SessionLogDir

        outputs.append(SessionLogDir(args.session_log_dir, render_json))
    configure(
        sys.stderr,
        fmt,
        log_file,
        verbosity=-1 if args.quiet else (1 if args.verbose else 0),
        outputs=outputs,
        lang=args.lang,
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
                    "hint": label("hint.tls_ca", ca=ca.cert),
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
        print(error_line(label("cli.cannot_open_log", reason=exc.strerror)), file=sys.stderr)
        return 2
    try:
        tls = _proxy_tls(args, args.upstream or ("127.0.0.1", 0))
    except (OSError, ValueError) as exc:
        print(error_line(label("cli.tls_setup", reason=exc)), file=sys.stderr)
        return 2
    sandbox = tmp = None
    upstream = args.upstream
    if args.route_by_user:
        upstream = upstream or ("", 0)  # each client chooses at login
    elif upstream is None:
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
        route_by_user=args.route_by_user,
        allow_upstream=UpstreamPolicy.from_args(args.allow_upstream),
    )
    settings = ProxySettings(
        tls=tls,
        lang=args.lang,
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
    sink: Callable[[str, dict[str, Any]], None] = emit
    try:
        if args.metrics is not None:
            from ftpdiag.proxy.metrics import Metrics, serve_metrics

            metrics = Metrics()
            sink = metrics.wrap(emit)
            metrics_port = serve_metrics(reactor, metrics, args.metrics)
            host = metrics_port.getHost()
            emit("metrics.listen", {"listen": show((host.host, host.port))})  # type: ignore[attr-defined]
        proxy = start_proxy(reactor, args.listen, settings, sink, connector)
    except error.CannotListenError as exc:
        address = f"{args.listen[0]}:{args.listen[1]}"
        print(
            error_line(label("cli.cannot_listen", address=address, reason=exc.socketError)),
            file=sys.stderr,
        )
        if sandbox is not None:
            sandbox.stop()
        return 2
    listen = proxy.address
    shown = "chosen at login (USER user@host[:port])" if args.route_by_user else show(upstream)
    fields: dict[str, Any] = {"listen": listen, "upstream": shown}
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
            {"listen": listen, "hint": label("hint.exposed")},
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
    """Run one command. The language (``--lang``, else the locale) is chosen before the parser
    is built, so help texts and argument errors already speak it."""
    line = sys.argv[1:] if argv is None else list(argv)
    use(resolve(lang_from_argv(line)))
    parser = build_parser()
    args = parser.parse_args(line)
    args.lang = use(resolve(args.lang or lang_from_argv(line)))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ftpdiag codes | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
