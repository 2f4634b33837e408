"""How the engine decides how many bytes a download should carry (no sockets)."""

from __future__ import annotations

from ftpdiag.rules.view import SessionView


def view_with(size: int | None = None, announced: int | None = None) -> SessionView:
    view = SessionView()
    view.observe("transfer.start", {"pipe": 1, "path": "f.bin", "command": "RETR"})
    if size is not None:
        view.sizes["f.bin"] = size
    if announced is not None:
        view.expected[1] = announced
    return view


def test_size_reply_is_the_whole_file_so_rest_is_subtracted() -> None:
    """SIZE 1000 then REST 300: 700 bytes are expected."""
    assert view_with(size=1000).expected_bytes(1, rest=300, moved=700) == 700


def test_150_announcement_read_both_ways_after_rest() -> None:
    """vsftpd announces the whole file, ProFTPD what remains: a complete transfer fits either."""
    assert view_with(announced=1000).expected_bytes(1, rest=300, moved=700) == 700  # vsftpd
    assert view_with(announced=700).expected_bytes(1, rest=300, moved=700) == 700  # ProFTPD
    assert view_with(announced=700).expected_bytes(1, rest=300, moved=100) == 400  # truncated


def test_nothing_known_means_no_expectation() -> None:
    """Without SIZE or an announcement nothing is expected (no truncation can be claimed)."""
    assert view_with().expected_bytes(1, rest=0, moved=5) is None
