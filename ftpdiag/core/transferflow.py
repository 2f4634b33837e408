"""Transfer flow: from a transfer command to its final reply and the closure of its pipe.

The final reply of a transfer (226, 426, 451…) and the end of its data travel separately; the
client must get the reply after the last byte, so the reply is held (``Outbox.hold_pipe``)
until the glue reports the pipe closed. Whichever comes second ends the transfer
(``transfer.end``), and a transfer whose pipe is also down is forgotten, so that a long
session stays small.
"""

from __future__ import annotations

from collections.abc import Callable

from ftpdiag.core import addresses as addr
from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
    CancelTimer,
    DataClosed,
    DataConnected,
    DataFailed,
    DataProgress,
    DataTally,
    DialData,
    FinishData,
    StartTimer,
    completion_timer,
)
from ftpdiag.core.messages import Command, Reply
from ftpdiag.core.outbox import Outbox, crlf
from ftpdiag.core.pairing import Pairing, Pending, Purpose
from ftpdiag.core.transfers import DataSetup, Mode, Transfer, TransferPhase


class Transfers:
    """The transfers of one session whose end is not yet settled, and their totals."""

    def __init__(
        self,
        config: SessionConfig,
        outbox: Outbox,
        pairing: Pairing,
        clock: Callable[[], float],
        forget_setup: Callable[[int], None],
    ) -> None:
        self.config = config
        self._outbox = outbox
        self._pairing = pairing
        self._clock = clock
        self._forget_setup = forget_setup
        self.by_pipe: dict[int, Transfer] = {}
        self._pipe_connected: dict[int, int] = {}
        #: The client's mode of the latest transfer (a reply's state tag between transfers).
        self.last_mode: Mode | None = None
        self.count = 0
        self.bytes = 0

    # ---- what the session asks ----------------------------------------------------------
    def start(self, command: Command, setup: DataSetup, type_: str, rest: int, tls: bool) -> None:
        """A transfer command on a ready set-up: record it, dial an active client, send it."""
        transfer = Transfer(
            pipe=setup.pipe,
            verb=command.verb,
            path=command.arg,
            client_mode=setup.client_mode,
            server_mode=setup.server_mode,
            type=type_,
            rest=rest,
            started=self._clock(),
            connected=self._pipe_connected.get(setup.pipe, 0),
        )
        self.last_mode = setup.client_mode
        self.by_pipe[setup.pipe] = transfer
        self.count += 1
        self._outbox.fact("transfer.start", **transfer.start_fields())
        if setup.client_mode == "active":
            assert setup.client_target is not None
            self._outbox.emit(DialData(setup.pipe, "client", setup.client_target, tls))
        self._pairing.send(command, command.raw, Purpose.TRANSFER, setup.pipe)

    def client_abort(self) -> None:
        """ABOR: mark the unfinished transfers and stop holding a final reply behind their data.

        A client that sent ABOR waits for replies, not for the data it abandons; holding the
        final reply until that data is read would deadlock both until the drain timeout.
        """
        for transfer in self.by_pipe.values():
            if not transfer.ended:
                transfer.aborted_by = "client"
        if self._outbox.holding:
            self._outbox.release()

    def on_final(self, pending: Pending, reply: Reply) -> None:
        out = self._outbox
        transfer = self.by_pipe.get(pending.pipe or 0)
        if transfer is None:
            out.to_client(reply.raw)
            return
        transfer.final_code = reply.code
        out.emit(CancelTimer(completion_timer(transfer.pipe)))
        raw = self._cut_reply(transfer) if transfer.cut and reply.code < 300 else reply.raw
        if transfer.phase is TransferPhase.DRAINED:
            out.to_client(raw)
            self._end(transfer, reply.code, pipe_down=True)
            return
        transfer.phase = TransferPhase.REPLIED
        # 426 says the server closed the data connection: what it sent before is still in flight
        # (perhaps unread by the proxy under back-pressure) and must reach the client, so the
        # pipe drains. Other errors may leave the server's end open: abort. After the client's
        # ABOR the data is unwanted, and the client waits for this reply: abort, do not hold.
        client_abort = transfer.aborted_by == "client"
        abort = client_abort or (reply.code >= 400 and reply.code != 426)
        out.emit(FinishData(transfer.pipe, abort=abort))
        if out.hold_pipe is None and not client_abort:
            out.hold_pipe = transfer.pipe
        out.to_client(raw)

    def _cut_reply(self, transfer: Transfer) -> bytes:
        """What the client gets instead of a server's success reply for a transfer whose data
        connection the proxy cut: the server had written everything into its socket, but the
        client did not receive it all, and a 2xx would pass a truncated file for a whole one."""
        text = f"ftpdiag: data connection stalled ({transfer.cut}) and closed; transfer aborted."
        self._outbox.fact("proxy.reply", code=426, text=text, command=transfer.verb)
        return crlf(f"426 {text}")

    def on_completion_timer(self, pipe: int) -> None:
        transfer = self.by_pipe.get(pipe)
        if transfer and transfer.final_code is None:
            self._outbox.fact(
                "transfer.no_completion",
                pipe=pipe,
                command=transfer.verb,
                path=transfer.path,
                bytes=transfer.bytes,
                waited_s=self.config.completion_timeout,
            )

    def close_all(self) -> None:
        """The session ends: every unfinished transfer ends with it."""
        for transfer in list(self.by_pipe.values()):
            if not transfer.ended:
                final = transfer.final_code  # the reply came; only the pipe's report did not
                outcome = final if final is not None else "closed"
                self._end(transfer, outcome, pipe_down=transfer.phase is TransferPhase.DRAINED)

    # ---- what a reply's state tags need ---------------------------------------------------
    def running(self) -> list[Transfer]:
        return [t for t in self.by_pipe.values() if t.open]

    def any_open(self) -> bool:
        return any(t.open for t in self.by_pipe.values())

    def get(self, pipe: int | None) -> Transfer | None:
        return self.by_pipe.get(pipe or 0)

    # ---- what the glue reports ----------------------------------------------------------
    def on_connected(self, ev: DataConnected) -> None:
        self._pipe_connected[ev.pipe] = self._pipe_connected.get(ev.pipe, 0) + 1
        transfer = self.by_pipe.get(ev.pipe)
        if transfer is not None:
            transfer.connected = self._pipe_connected[ev.pipe]
        self._outbox.fact("data.connect", pipe=ev.pipe, side=ev.side, peer=addr.show(ev.peer))

    def on_failed(self, ev: DataFailed, setup: DataSetup | None) -> None:
        out = self._outbox
        out.fact(
            "data.failed",
            pipe=ev.pipe,
            side=ev.side,
            kind=ev.kind,
            detail=ev.detail,
            client_mode=setup.client_mode if setup else None,
            server_mode=setup.server_mode if setup else None,
        )
        transfer = self.by_pipe.get(ev.pipe)
        if ev.kind == "stall" and transfer is not None and not transfer.ended:
            transfer.cut = ev.detail
            final = transfer.final_code
            if (
                final is not None
                and final < 300
                and out.hold_pipe == ev.pipe
                and out.first_held is not None
            ):
                # The success reply came first and waits behind the data (it is the first
                # held line): the client must not get it now.
                out.replace_first_held(self._cut_reply(transfer))

    def on_tally(self, ev: DataTally) -> None:
        transfer = self.by_pipe.get(ev.pipe)
        if transfer is not None and transfer.pipe_up:
            transfer.to_client, transfer.to_server = ev.to_client, ev.to_server

    def on_progress(self, ev: DataProgress) -> None:
        transfer = self.by_pipe.get(ev.pipe)
        if transfer is None or transfer.ended:
            return
        transfer.to_client, transfer.to_server = ev.to_client, ev.to_server
        elapsed = self._clock() - transfer.started
        rate = transfer.bytes * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        self._outbox.fact(
            "transfer.progress",
            pipe=ev.pipe,
            command=transfer.verb,
            path=transfer.path,
            bytes=transfer.bytes,
            elapsed_ms=round(elapsed * 1000, 1),
            rate_mbps=round(rate, 2),
        )

    def on_closed(self, ev: DataClosed) -> None:
        out = self._outbox
        transfer = self.by_pipe.get(ev.pipe)
        if transfer is not None and not transfer.ended:
            transfer.to_client, transfer.to_server = ev.to_client, ev.to_server
            transfer.client_end, transfer.server_end = ev.client_end, ev.server_end
            transfer.first_closed = ev.first_closed
            transfer.duration = ev.duration
            out.fact(
                "data.close",
                pipe=ev.pipe,
                to_client=ev.to_client,
                to_server=ev.to_server,
                client_end=ev.client_end,
                server_end=ev.server_end,
                first_closed=ev.first_closed,
            )
            if transfer.phase is TransferPhase.REPLIED:
                assert transfer.final_code is not None
                self._end(transfer, transfer.final_code, pipe_down=True)
            else:
                transfer.phase = TransferPhase.DRAINED
                if self.config.completion_timeout > 0:
                    timer = completion_timer(ev.pipe)
                    out.emit(StartTimer(timer, self.config.completion_timeout))
        if out.hold_pipe == ev.pipe:
            out.release()

    # ---- the end ------------------------------------------------------------------------
    def _end(self, transfer: Transfer, outcome: int | str, pipe_down: bool) -> None:
        """Log ``transfer.end``; a transfer whose pipe is also down is forgotten, so that a
        long session stays small (the pipe's report gave the duration then)."""
        if transfer.ended:
            return
        transfer.phase = TransferPhase.ENDED
        if not pipe_down:
            transfer.duration = self._clock() - transfer.started
        self.bytes += transfer.bytes
        self._outbox.fact("transfer.end", **transfer.end_fields(outcome))
        if pipe_down:
            self.by_pipe.pop(transfer.pipe, None)
            self._pipe_connected.pop(transfer.pipe, None)
            self._forget_setup(transfer.pipe)
