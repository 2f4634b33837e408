"""The session's outbox: its outputs in order, the replies held back, the early server bytes.

Every part of the session writes here and nowhere else, so the order the glue carries the
outputs out in is the order they were decided in. Two things are held back:

- replies to the client while a transfer's data is still being delivered (``hold``): the
  client must never see ``226`` before the last byte, nor the replies after it;
- bytes for the server before the control connection to it is up (the proxy's own commands
  may be decided that early).
"""

from __future__ import annotations

from typing import Any

from ftpdiag.core.events import Fact, Output, ToClient, ToServer


def crlf(text: str) -> bytes:
    """One control line as sent on the wire."""
    return text.encode("utf-8", errors="replace") + b"\r\n"


class Outbox:
    """Ordered outputs of one session, with the client's held replies and early server bytes."""

    def __init__(self) -> None:
        self._out: list[Output] = []
        self._to_server_early: list[bytes] = []
        self._upstream_up = False
        #: The pipe whose data the client's next replies wait behind, if any.
        self.hold_pipe: int | None = None
        self._held: list[bytes] = []

    # ---- writing ------------------------------------------------------------------------
    def emit(self, output: Output) -> None:
        self._out.append(output)

    def fact(self, event: str, **fields: Any) -> None:
        """A record for the log; its name and fields are in ``core/facts.py``."""
        self._out.append(Fact(event, fields))

    def to_client(self, data: bytes) -> None:
        if self.hold_pipe is not None:
            self._held.append(data)
        else:
            self._out.append(ToClient(data))

    def proxy_reply(self, code: int, text: str, verb: str | None = None) -> None:
        """A reply the proxy itself gives the client; logged so a person sees what it got."""
        self.fact("proxy.reply", code=code, text=text, command=verb)
        self.to_client(crlf(f"{code} {text}"))

    def to_server(self, data: bytes) -> None:
        if self._upstream_up:
            self._out.append(ToServer(data))
        else:
            self._to_server_early.append(data)

    def upstream_up(self) -> None:
        """The control connection to the server is up: what waited for it goes now."""
        self._upstream_up = True
        self._out.extend(ToServer(d) for d in self._to_server_early)
        self._to_server_early.clear()

    # ---- the hold behind a transfer's data ------------------------------------------------
    @property
    def holding(self) -> bool:
        return self.hold_pipe is not None

    @property
    def first_held(self) -> bytes | None:
        return self._held[0] if self._held else None

    def replace_first_held(self, data: bytes) -> None:
        self._held[0] = data

    def release(self) -> None:
        """Send the client the replies held back behind a transfer's data, in order."""
        self.hold_pipe = None
        held, self._held = self._held, []
        for data in held:
            self.to_client(data)

    def release_at_close(self) -> None:
        """The session ends: held replies go out now, before the close."""
        if self._held:
            self._out.extend(ToClient(d) for d in self._held)
            self._held.clear()

    def flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out
