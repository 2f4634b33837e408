"""``ftpdiag demo``: a scripted session through the proxy on the embedded sandbox."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    raise SystemExit("ftpdiag: error: demo is not available yet")


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="a one-minute tour: a scripted session shows 220 and a 426 diagnosed")
    p.set_defaults(func=run)
