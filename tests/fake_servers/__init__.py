"""Fault-injecting FTP servers (pyftpdlib) for ftpdiag's end-to-end tests.

Re-exported by ftpdiag's pytest plugin; see :mod:`.harness` for the server
and :mod:`.faults` for the available misbehaviours.
"""

from .faults import (
    AbortTransferAfter,
    Delay,
    DropControlDuringTransfer,
    Fault,
    GreetingDelay,
    GreetingReply,
    IdleTimeout,
    MalformedPasv,
    MultilineMismatch,
    NoCompletionReply,
    NoGreeting,
    Reply,
    ResetDataAfter,
    SlowData,
    Unsolicited,
)
from .harness import BANNER, FakeFTPServer, build_handler_class, make_file, sha256_of

__all__ = [
    "BANNER",
    "AbortTransferAfter",
    "Delay",
    "DropControlDuringTransfer",
    "FakeFTPServer",
    "Fault",
    "GreetingDelay",
    "GreetingReply",
    "IdleTimeout",
    "MalformedPasv",
    "MultilineMismatch",
    "NoCompletionReply",
    "NoGreeting",
    "Reply",
    "ResetDataAfter",
    "SlowData",
    "Unsolicited",
    "build_handler_class",
    "make_file",
    "sha256_of",
]
