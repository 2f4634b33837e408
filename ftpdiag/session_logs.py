"""``--session-log-dir``: each session's JSON lines in a file of its own, beside the main log.

A help desk that keeps one proxy running for everyone needs to hand one user's session to one
ticket. Files are named by time, session id, client and server
(``20261207-231500_3a62_127.0.0.1_55466_to_127.0.0.1_21.jsonl``), created with mode 0600
(sessions hold user names and paths), written line by line like the main log, and closed with
the session's last record (its ``session.summary``). Writing is best effort: a full disk
stops that file with one warning, never the proxy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import IO, Any

EventDict = MutableMapping[str, Any]
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
#: The record after which a session writes nothing more.
LAST_EVENT = "session.summary"


def _part(value: object) -> str:
    return _UNSAFE.sub("_", str(value)).strip("_") or "unknown"


class SessionLogDir:
    """A sink of the logging fan-out (``write(level, event_dict)``), one file per session."""

    min_level = logging.DEBUG  # everything, as the main JSON log

    def __init__(self, directory: Path, render: Callable[[EventDict], str]) -> None:
        self.directory = directory
        self.render = render
        self.files: dict[str, IO[str]] = {}
        self.paths: dict[str, Path] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, level: int, event_dict: EventDict) -> None:
        sid = event_dict.get("session")
        if sid is None:
            return
        sid = str(sid)
        stream = self.files.get(sid)
        if stream is None:
            stream = self._open(sid, event_dict)
            if stream is None:
                return
        try:
            stream.write(self.render(event_dict) + "\n")
        except (OSError, ValueError) as exc:
            self._close(sid)
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"ftpdiag: warning: cannot write session log {sid}: {exc}\n")
            return
        if event_dict.get("event") == "route.selected":  # a gateway's client chose its server
            self.rename(sid, str(event_dict.get("upstream")))
        elif event_dict.get("event") == LAST_EVENT:
            self._close(sid)

    def _open(self, sid: str, first: EventDict) -> IO[str] | None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        client = _part(first.get("client", "unknown"))
        server = _part(first.get("upstream", "unknown"))
        base = f"{stamp}_{sid}_{client}_to_{server}"
        for n in range(100):
            path = self.directory / (f"{base}.jsonl" if n == 0 else f"{base}-{n}.jsonl")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(f"ftpdiag: warning: cannot create {path}: {exc}\n")
                return None
            stream = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
            self.files[sid], self.paths[sid] = stream, path
            return stream
        return None

    def rename(self, sid: str, server: str) -> Path | None:
        """Put the server chosen later (routing at login) into the open file's name."""
        path = self.paths.get(sid)
        if path is None:
            return None
        head, _, _old = path.stem.rpartition("_to_")
        target = path.with_name(f"{head}_to_{_part(server)}{path.suffix}")
        with contextlib.suppress(OSError):
            path.rename(target)
            self.paths[sid] = target
        return self.paths[sid]

    def _close(self, sid: str) -> None:
        stream = self.files.pop(sid, None)
        self.paths.pop(sid, None)
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def close(self) -> None:
        for sid in list(self.files):
            self._close(sid)
