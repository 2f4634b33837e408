"""FTP sessions rebuilt from a packet capture (pcap or pcapng), as the proxy's facts.

Sans IO apart from mapping the file: ``pcap`` walks the records, ``decode`` finds the TCP
segment in each frame, ``tcp`` rebuilds streams, ``link`` recognises FTP connections and
links data connections to their commands, ``ftp`` turns a session into the records of the
proxy's JSON-lines log, which ``ftpdiag analyze`` feeds to the same diagnosis engine.
"""

from __future__ import annotations

from typing import Any

from ftpdiag.capture.decode import tcp_segment
from ftpdiag.capture.link import Tracker
from ftpdiag.capture.pcap import CaptureError, looks_like_capture, open_capture, packets

__all__ = ["CaptureError", "capture_sessions", "looks_like_capture", "sessions_from_buffer"]


def sessions_from_buffer(buf: Any, source: str = "capture") -> list[list[dict[str, Any]]]:
    """The FTP sessions of a capture held in ``buf``: one list of records per session, in
    the order their control connections appear."""
    tracker = Tracker(source)
    segment = tracker.segment
    for ts, linktype, data, off, caplen in packets(buf):
        seg = tcp_segment(linktype, data, off, caplen)
        if seg is not None:
            segment(ts, seg, data)
    return [session.records for session in tracker.finish()]


def capture_sessions(path: str) -> list[list[dict[str, Any]]]:
    """The FTP sessions of the capture file at ``path`` (mapped, never read whole)."""
    handle, mapped = open_capture(path)
    try:
        return sessions_from_buffer(mapped, path)
    finally:
        if not isinstance(mapped, bytes):
            mapped.close()
        handle.close()
