"""Packet captures (pcap, pcapng) as one more input format: :mod:`ftpdiag.capture` rebuilds
the sessions; this entry lets detection find them by their magic bytes, and reads a file by
mapping it (a capture may be gigabytes) rather than reading it whole."""

from __future__ import annotations

from ftpdiag.capture import capture_sessions, looks_like_capture, sessions_from_buffer
from ftpdiag.importers.base import Format, Sessions, register


def _detect(head: bytes) -> float:
    return 1.0 if looks_like_capture(head) else 0.0


def _read(data: bytes) -> Sessions:
    return sessions_from_buffer(data)


CAPTURE = register(
    Format(
        "capture",
        "packet capture (pcap, pcapng)",
        _detect,
        _read,
        read_file=capture_sessions,
    )
)
