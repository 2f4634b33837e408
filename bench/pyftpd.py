"""A pyftpdlib server in its own process for the benchmarks (``python -m bench.pyftpd``).

It listens on 127.0.0.1 (port 0 picks a free one), serves ``--root`` to one read-write user,
prints ``PORT <n>`` on stdout once it listens, and runs until SIGTERM. Limits are lifted so
that hundreds of concurrent and thousands of idle sessions fit (pyftpdlib's default is 512).
"""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyftpd")
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pasv", metavar="MIN:MAX", help="passive ports (default: any free)")
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    # Configured here, so that pyftpdlib does not install its own INFO-level stderr logging
    # (a line per command would slow it down and fill the disk).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = type(
        "BenchHandler",
        (FTPHandler,),
        {
            "authorizer": authorizer,
            "banner": "ftpdiag-bench pyftpdlib ready",
            "auth_failed_timeout": 0.0,
            "timeout": 900,
            "passive_ports": None if not args.pasv else range(
                int(args.pasv.split(":")[0]), int(args.pasv.split(":")[1]) + 1),
        },
    )
    server = FTPServer(("127.0.0.1", args.port), handler, backlog=1024)
    server.max_cons = 0  # no limit
    server.max_cons_per_ip = 0

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"PORT {server.address[1]}", flush=True)
    try:
        server.serve_forever(handle_exit=False)
    finally:
        server.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
