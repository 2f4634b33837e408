"""The embedded pyftpdlib server: the default upstream when no ``--upstream`` is given, and
the runner the pytest plugin uses for users' own handler classes.

pyftpdlib keeps its settings in class attributes, so every server gets a fresh subclass of
the handler it is given (never a mutation of ``FTPHandler``), a fresh authorizer and its own
IOLoop in its own thread; ``stop`` is bounded and closes every socket.
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

SANDBOX_USER = "diag"
SANDBOX_PASSWORD = "diag"
_POLL = 0.02
# The sandbox's own chatter would drown the proxy's console; the proxy logs the session.
logging.getLogger("pyftpdlib").propagate = False
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())


def write_random_file(path: Path, size: int, seed: int = 0) -> str:
    """Write ``size`` deterministic pseudo-random bytes; return their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def seed_sandbox(root: Path) -> None:
    """A few files worth transferring: text, a small binary, and one of several MB."""
    (root / "README.txt").write_text(
        "This is the ftpdiag sandbox.\r\nDownload big.bin to watch a transfer, upload anything.\r\n"
    )
    write_random_file(root / "small.bin", 64 * 1024, seed=1)
    write_random_file(root / "big.bin", 8 * 1024 * 1024, seed=2)
    (root / "upload").mkdir(exist_ok=True)


class HandlerThread:
    """Runs a pyftpdlib handler class on ``host``:<free port> in a private thread with its
    own IOLoop; ``stop`` is bounded and closes every socket."""

    def __init__(self, handler: type[FTPHandler], host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.ioloop = IOLoop()
        self.server = FTPServer((host, port), self.handler, ioloop=self.ioloop)
        self.address: tuple[str, int] = self.server.address[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftpdiag-sandbox", daemon=True)

    def _serve(self) -> None:
        # Drive the IOLoop directly: FTPServer.serve_forever would also install pyftpdlib's
        # own logging handlers, and the proxy logs only through structlog.
        while not self._stop.is_set():
            self.ioloop.loop(timeout=_POLL, blocking=False)
        self.server.close_all()

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class ServerThread(HandlerThread):
    """Serves ``root`` with a fresh subclass of ``handler`` and a fresh authorizer."""

    def __init__(
        self,
        root: Path,
        handler: type[FTPHandler] = FTPHandler,
        user: str = SANDBOX_USER,
        password: str = SANDBOX_PASSWORD,
        anonymous: bool = True,
        host: str = "127.0.0.1",
        **attrs: Any,
    ) -> None:
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(root), perm="elradfmwMT")
        if anonymous:
            authorizer.add_anonymous(str(root))
        namespace = {"authorizer": authorizer, "auth_failed_timeout": 0.0, **attrs}
        super().__init__(type(f"Sandbox{handler.__name__}", (handler,), namespace), host)
        self.user, self.password, self.root = user, password, root


def start_sandbox() -> tuple[ServerThread, tempfile.TemporaryDirectory[str]]:
    """The default upstream of ``ftpdiag proxy``: a seeded temporary directory, served."""
    tmp = tempfile.TemporaryDirectory(prefix="ftpdiag-sandbox-")
    root = Path(tmp.name)
    seed_sandbox(root)
    return ServerThread(root).start(), tmp
