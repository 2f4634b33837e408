"""``ftpdiag proxy --record-data DIR``: keep the bytes the server sent on each data connection,
so ``ftpdiag replay`` can serve the real bytes instead of filler.

Off by default; each file is capped (``--record-data-max``), created mode 0600, and never
written for a TLS-protected data connection unless ``--record-tls-data`` says so (what PROT P
protects stays protected). A pipe that records is relayed through the reactor rather than
with ``os.splice``: the bytes must pass through Python to be kept. When the pipe ends, one
``transfer.data`` record names the file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX = 64 << 20


@dataclass(frozen=True, slots=True)
class DataRecording:
    """Where and how much of each transfer to keep."""

    directory: Path
    max_bytes: int = DEFAULT_MAX
    tls: bool = False

    def tap(self, session: str, pipe: int, emit: Callable[[dict[str, Any]], None]) -> DataTap:
        # Session ids are short: a random part keeps an earlier run's file from being
        # overwritten (the file is also created exclusively).
        name = f"{session}-{pipe}-{secrets.token_hex(3)}.bin"
        return DataTap(self, self.directory / name, pipe, emit)


class DataTap:
    """Handed to one data pipe: gets what the server sent, keeps up to the cap."""

    def __init__(
        self,
        recording: DataRecording,
        path: Path,
        pipe: int,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.recording = recording
        self.path = path
        self.pipe = pipe
        self.emit = emit
        self.fd: int | None = None
        self.kept = 0
        self.seen = 0
        self.closed = False

    def accepts(self, tls: bool) -> bool:
        """Whether this pipe's bytes may be kept (TLS data only when asked for)."""
        return self.recording.tls or not tls

    def write(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.recording.max_bytes - self.kept
        if room <= 0 or self.closed:
            return
        try:
            if self.fd is None:
                self.recording.directory.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                self.fd = os.open(self.path, flags, 0o600)
            chunk = data[:room]
            os.write(self.fd, chunk)
            self.kept += len(chunk)
        except OSError as exc:
            # A full disk must not break the relay: recording stops, and the record says why.
            self._close(str(exc.strerror or exc))

    def close(self) -> None:
        self._close(None)

    def _close(self, error: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.fd is not None:
            os.close(self.fd)
        if self.fd is None and error is None:
            return  # nothing came from the server: no file, no record
        self.emit(
            {
                "pipe": self.pipe,
                "file": str(self.path),
                "bytes": self.kept,
                "truncated": self.seen > self.kept,
                "error": error,
            }
        )
