"""A real pyftpdlib FTP server, with injectable faults, for end-to-end tests.

Why a harness rather than ``pyftpdlib.servers.FTPServer`` directly:

* every server gets its own ``IOLoop`` and its own thread, so tests can run
  several servers (and a proxy, and clients) in one process without sharing
  pyftpdlib's global ``IOLoop.instance()``;
* every server gets its own generated ``FTPHandler`` subclass and its own
  ``DummyAuthorizer``; pyftpdlib keeps configuration in *class* attributes, and
  setting them on ``FTPHandler`` itself would leak between tests;
* ``stop()`` is bounded and leaves no thread, socket or epoll fd behind, which
  the end-to-end tests rely on to detect leaks in the proxy itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ftpdiag.sandbox import write_random_file

from ._pyftpdlib import DTPHandler, DummyAuthorizer, FTPHandler, FTPServer, IOLoop
from .faults import Fault, FaultGate

__all__ = [
    "BANNER",
    "FakeFTPServer",
    "build_handler_class",
    "make_file",
    "sha256_of",
]

#: Greeting text of every fake server (pyftpdlib's default contains its
#: version number, which would make assertions brittle).
BANNER = "ftpdiag fake FTP server ready."

#: Upper bound on one IOLoop poll, i.e. on how long ``stop()`` waits for the
#: loop thread to notice the stop request.
_POLL_INTERVAL = 0.02

#: Bounded join in ``stop()``; a server that does not stop within this is a
#: bug worth failing the test for, not something to wait on forever.
_JOIN_TIMEOUT = 5.0

_FULL_PERMS = "elradfmwMT"


def _require_loopback(what: str, address: str) -> None:
    """Tests must never listen on, or advertise, a non-loopback address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{what} must be a literal loopback IP, got {address!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"{what} must be a loopback address, got {address!r}")


def build_handler_class(
    base: type[FTPHandler],
    faults: Sequence[Fault],
    attrs: Mapping[str, Any],
) -> type[FTPHandler]:
    """Create the per-server handler class: gate, fault mixins, then ``base``.

    Data-channel mixins are stacked the same way on ``base.dtp_handler`` (or
    on ``attrs["dtp_handler"]``), which keeps TLS_DTPHandler working when
    ``base`` is TLS_FTPHandler.  ``attrs`` become class attributes of the new
    class only; pyftpdlib's classes are never modified.
    """
    control = [m for f in faults if (m := f.control_mixin()) is not None]
    data = [m for f in faults if (m := f.dtp_mixin()) is not None]
    namespace: dict[str, Any] = dict(attrs)
    if data:
        dtp_base: type[DTPHandler] = namespace.get("dtp_handler", base.dtp_handler)
        namespace["dtp_handler"] = type("FakeDTPHandler", (*data, dtp_base), {})
    handler: type[FTPHandler] = type("FakeFTPHandler", (FaultGate, *control, base), namespace)
    return handler


@dataclass
class FakeFTPServer:
    """A pyftpdlib server on 127.0.0.1:<ephemeral>, run in a private thread.

    Users: ``user``/``password`` (default "user"/"secret", full permissions
    ``elradfmwMT``) and, unless ``anonymous=False``, ``anonymous`` (read-only,
    any password), all rooted at ``root``.  Use as a context manager or call
    ``start()``/``stop()``.

    ``auth_failed_timeout`` replaces pyftpdlib's 3 s pause before answering a
    wrong password with 530 (a brute-force brake that would only slow tests
    down); set it to 3.0 to get pyftpdlib's real behaviour.  ``handler_attrs``
    are extra class attributes for the generated handler (e.g. ``certfile``
    for TLS_FTPHandler).
    """

    root: Path
    faults: Sequence[Fault] = ()
    handler_base: type[FTPHandler] = FTPHandler
    masquerade_address: str | None = None
    max_cons_per_ip: int = 0
    anonymous: bool = True
    passive_ports: range | None = None
    host: str = "127.0.0.1"
    user: str = "user"
    password: str = "secret"
    auth_failed_timeout: float = 0.0
    handler_attrs: Mapping[str, Any] = field(default_factory=dict)

    handler_class: type[FTPHandler] | None = field(default=None, init=False, repr=False)
    _server: Any = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _error: BaseException | None = field(default=None, init=False, repr=False)
    _address: tuple[str, int] | None = field(default=None, init=False, repr=False)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeFTPServer:
        """Bind, then serve in a daemon thread; returns ``self`` for chaining.

        Binding happens in the caller's thread so that ``address`` is valid as
        soon as ``start()`` returns and bind errors surface here.
        """
        if self._thread is not None:
            raise RuntimeError("server already started")
        _require_loopback("host", self.host)
        if self.masquerade_address is not None:
            _require_loopback("masquerade_address", self.masquerade_address)
        if self.max_cons_per_ip < 0:
            raise ValueError("max_cons_per_ip must be >= 0")

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.root), perm=_FULL_PERMS)
        if self.anonymous:
            authorizer.add_anonymous(str(self.root))

        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "banner": BANNER,
            "masquerade_address": self.masquerade_address,
            "passive_ports": list(self.passive_ports) if self.passive_ports else None,
            "auth_failed_timeout": self.auth_failed_timeout,
        }
        attrs.update(self.handler_attrs)
        self.handler_class = build_handler_class(self.handler_base, self.faults, attrs)

        ioloop = IOLoop.factory()
        try:
            server = FTPServer((self.host, 0), self.handler_class, ioloop=ioloop)
        except BaseException:
            ioloop.close()
            raise
        # Instance attribute: shadows FTPServer.max_cons_per_ip for this server only.
        server.max_cons_per_ip = self.max_cons_per_ip
        host, port = server.address
        self._address = (str(host), int(port))
        self._server = server
        self._stopping.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, args=(server,), name=f"FakeFTPServer:{port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self, server: Any) -> None:
        """Run the IOLoop until asked to stop, then close every socket.

        ``IOLoop.loop()`` is not used: it only returns once no socket is left,
        and on first use it configures logging for the whole process.  Polling
        by hand with a short timeout keeps ``stop()`` responsive while still
        honouring scheduled calls (delays) to the millisecond.
        """
        ioloop = server.ioloop
        try:
            next_call: float | None = None
            while not self._stopping.is_set():
                timeout = _POLL_INTERVAL if next_call is None else min(_POLL_INTERVAL, next_call)
                if ioloop.socket_map:
                    ioloop.poll(timeout)
                next_call = ioloop.sched.poll()
        except BaseException as exc:  # reported by stop()
            self._error = exc
        finally:
            # Closes the listener, every control/data/PASV socket, cancels
            # scheduled calls and closes the epoll fd, all from this thread.
            server.close_all()

    def stop(self) -> None:
        """Stop serving and release everything; idempotent.

        Raises RuntimeError if the loop thread does not finish within the
        bounded join, and re-raises any exception that killed the loop.
        """
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        thread.join(_JOIN_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{thread.name} did not stop within {_JOIN_TIMEOUT} s")
        self._thread = None
        self._server = None
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError(f"{thread.name} crashed") from error

    def __enter__(self) -> FakeFTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addressing --------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the control listener (valid after ``start()``)."""
        if self._address is None:
            raise RuntimeError("server not started")
        return self._address

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def url(self, path: str = "", *, anonymous: bool = False) -> str:
        """An ``ftp://`` URL (with credentials) for curl and friends."""
        host, port = self.address
        creds = "" if anonymous else f"{self.user}:{self.password}@"
        return f"ftp://{creds}{host}:{port}/{path.lstrip('/')}"


# ---------------------------------------------------------------------------
# File helpers
# ---------------------------------------------------------------------------

_CHUNK = 1 << 20


def make_file(root: Path, name: str, size: int, seed: int = 0) -> str:
    """Write ``size`` deterministic pseudo-random bytes to ``root/name``.

    Random (incompressible, all byte values including CR/LF) content catches
    truncation, ASCII-mode mangling and reordering that a repeated pattern
    would hide; a seed keeps failures reproducible.  Returns the SHA-256 hex
    digest of the content so tests can compare what arrived on the far side.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_random_file(path, size, seed)


def sha256_of(path: Path | str) -> str:
    """SHA-256 hex digest of a file, read in chunks (files may be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
