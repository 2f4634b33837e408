"""The one way the glue stops a delayed call it keeps under a key."""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.interfaces import IDelayedCall

K = TypeVar("K")


def cancel(timers: dict[K, IDelayedCall], key: K) -> None:
    """Forget the call kept under ``key`` and stop it if it has not run yet (a call that
    already fired or was cancelled cannot be cancelled again)."""
    call = timers.pop(key, None)
    if call is not None and call.active():
        call.cancel()
