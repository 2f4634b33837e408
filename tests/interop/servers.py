"""Real FTP servers (vsftpd, proftpd, pure-ftpd) for the interop tests.

Each server runs in the foreground, as a child of the test process, on free high ports of
127.0.0.1 (numeric only: no server does DNS or ident lookups), with a temporary directory that
holds its config, logs, data root and (for TLS) a self-signed certificate made at test time.
Use one as a context manager::

    with VsftpdServer() as srv:            # started and ready (220 greeting seen)
        ftp = ftplib.FTP()
        ftp.connect(srv.host, srv.port)
        ftp.login(srv.user, srv.password)  # files land in srv.root

Binaries are looked up in tests/interop/.debs/root (where ``scripts/test.sh`` unpacks the
Debian packages: the three servers conflict with each other, so apt installs only one), then
on PATH plus /usr/sbin. Starting a server needs root (chroot, setuid). When a binary is missing
or we are not root, :func:`unavailable` fails the test if the ``CI`` environment variable is set
and skips it otherwise, with the reason in the message.

Login accounts:

* ``ftpdiag`` / :data:`PASSWORD` on every server. For vsftpd that is a real system user
  (vsftpd's local users go through PAM): :func:`ensure_system_user` creates it on first use
  (``useradd --system``, shell ``/usr/sbin/nologin``, home ``/``: vsftpd chdir()s there before
  it chroots to ``local_root``, so it must exist) and writes the PAM
  service ``/etc/pam.d/ftpdiag-vsftpd`` (pam_unix only; Debian's ``vsftpd`` service also requires
  a login shell from /etc/shells). proftpd (``AuthUserFile``) and pure-ftpd (PureDB) use virtual
  users mapped onto the same uid/gid, so every server writes files owned by ``ftpdiag``.
* vsftpd also accepts ``anonymous`` (no password asked), read-only, chrooted to
  ``srv.anon_root``: vsftpd refuses a chroot root the anonymous user can write to, so that
  directory is root-owned mode 0555 and holds ``pub/`` plus ``welcome.txt``.

Addresses as a proxy sees them: servers listen on 127.0.0.1 only and answer PASV with
127.0.0.1. By default they keep their stock address checks: the data connection of PASV must
come from the control connection's peer address, and PORT may only name that address. A proxy
on 127.0.0.1 that connects to the server's data ports from 127.0.0.1, and listens on 127.0.0.1
for active-mode data, passes them. ``promiscuous=True`` turns the checks off (vsftpd
``pasv_promiscuous``/``port_promiscuous``, proftpd ``AllowForeignAddress``, pure-ftpd ``-w``).
"""

from __future__ import annotations

import contextlib
import datetime
import ftplib
import ipaddress
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import pytest

from bench.procs import stop_group

HOST = "127.0.0.1"
USER = "ftpdiag"
PASSWORD = "ftpdiag-interop-pw"
PAM_SERVICE = "ftpdiag-vsftpd"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
USER_GECOS = "ftpdiag interop test user"

INTEROP_DIR = Path(__file__).resolve().parent
DEBS_ROOT = INTEROP_DIR / ".debs" / "root"
SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")

# Ports we hand out: below Linux's default ephemeral range (32768-60999), so an outgoing
# connection cannot grab one between our check and the server's bind.
PORT_MIN, PORT_MAX = 20000, 32000
# Pure-FTPd caps its concurrent users at half the passive port range: 100 ports -> 50 users.
PASV_RANGE_SIZE = 100


class ServerUnavailable(Exception):
    """The server cannot run here (binary missing, not root, ...); the message says why."""


def unavailable(message: str) -> NoReturn:
    """Fail the current test when CI is set, otherwise skip it, with ``message`` as reason."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------------------------
# Binaries, user, ports, certificates


def find_binary(name: str) -> Path:
    """Return the path of ``name`` from tests/interop/.debs/root, else PATH and /usr/sbin."""
    for sub in ("usr/sbin", "usr/bin", "sbin", "bin"):
        candidate = DEBS_ROOT / sub / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_DIRS])
    found = shutil.which(name, path=path)
    if found:
        return Path(found)
    raise ServerUnavailable(
        f"{name} not found at {DEBS_ROOT}/usr/sbin nor on PATH or /usr/sbin: "
        "run scripts/test.sh which installs it"
    )


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ServerUnavailable(
            f"{what} needs root (chroot, setuid) to run; run the tests as root "
            "(scripts/test.sh as root installs the servers too)"
        )


_user_ready: tuple[int, int] | None = None


def ensure_system_user() -> tuple[int, int]:
    """Make sure the ``ftpdiag`` system user and its PAM service exist; return (uid, gid).

    Creates the user if missing (home ``/``, nologin shell), (re)sets its password to
    :data:`PASSWORD` once per process, and writes :data:`PAM_FILE` if its content differs.
    Refuses to touch an existing ``ftpdiag`` account that this harness did not create.
    """
    global _user_ready
    if _user_ready is not None:
        return _user_ready
    require_root("creating the ftpdiag test user")
    import pwd

    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "--comment",
                USER_GECOS,
                USER,
            ]
        )
        entry = pwd.getpwnam(USER)
    if entry.pw_gecos.split(",")[0] != USER_GECOS:
        raise ServerUnavailable(
            f"a user {USER!r} exists that the interop harness did not create "
            f"(GECOS {entry.pw_gecos!r}); not changing its password"
        )
    if not os.path.isdir(entry.pw_dir):
        # vsftpd chdir()s to the home directory before it chroots to local_root.
        _run(["usermod", "--home", "/", USER])
        entry = pwd.getpwnam(USER)
    _run(["chpasswd"], input=f"{USER}:{PASSWORD}\n")
    pam = (
        "# PAM service for ftpdiag's interop tests (tests/interop/servers.py): vsftpd local\n"
        "# users authenticated by pam_unix, without Debian's pam_shells requirement.\n"
        "auth     required pam_unix.so nodelay\n"
        "account  required pam_unix.so\n"
        "session  required pam_permit.so\n"
    )
    if not PAM_FILE.exists() or PAM_FILE.read_text() != pam:
        PAM_FILE.write_text(pam)
    _user_ready = (entry.pw_uid, entry.pw_gid)
    return _user_ready


def sha512_crypt(password: str) -> str:
    """Return a ``$6$`` (SHA-512) crypt(3) hash of ``password`` (fast to check, unlike argon2)."""
    salt = "".join(
        random.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=16)
    )
    openssl = shutil.which("openssl")
    if openssl:
        out = _run([openssl, "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n")
        return out.strip()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated since 3.11, gone in 3.13: only a fallback

    return crypt.crypt(password, f"$6${salt}$")


_reserved: set[int] = set()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Return ``count`` consecutive free TCP ports of 127.0.0.1, reserved in this process.

    Ports stay reserved (not handed out again) until :func:`release_ports`.
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(PORT_MIN, PORT_MAX - count)
        ports = list(range(base, base + count))
        if any(p in _reserved for p in ports):
            continue
        if all(_port_is_free(p) for p in ports):
            _reserved.update(ports)
            return ports
    raise RuntimeError(f"no {count} consecutive free ports in {PORT_MIN}-{PORT_MAX}")


def release_ports(ports: list[int]) -> None:
    """Let :func:`free_ports` hand ``ports`` out again."""
    _reserved.difference_update(ports)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its unencrypted PEM private key."""

    cert: Path
    key: Path


def make_self_signed_cert(directory: Path, host: str = HOST) -> CertPair:
    """Write a self-signed RSA-2048 certificate for ``host`` (IP SAN) and its key.

    The files go into ``directory`` as ``cert.pem`` and ``key.pem`` (mode 0600).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        san = [x509.DNSName(host)]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / "cert.pem", directory / "key.pem")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.touch(mode=0o600)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return pair


def client_tls_context(cert: CertPair | None = None) -> ssl.SSLContext:
    """A client context that trusts ``cert`` (else verifies nothing: self-signed test servers)."""
    if cert is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(cert.cert))


class SessionReuseFTP_TLS(ftplib.FTP_TLS):
    """``ftplib.FTP_TLS`` whose protected data connections resume the control TLS session.

    Python's ftplib (3.11) wraps each data connection with a fresh TLS session, which
    servers requiring session reuse (vsftpd ``require_ssl_reuse=YES``) reject with
    "522 SSL connection failed: session reuse required".
    """

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            assert isinstance(control, ssl.SSLSocket), "PROT P without AUTH TLS"
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=control.session
            )
        return conn, size


# --------------------------------------------------------------------------------------------
# Servers


def _run(cmd: list[str], input: str | None = None, timeout: float = 30) -> str:
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


class FTPServer:
    """Base class: a server process, its temporary directory and its login account.

    Attributes available after :meth:`start`: ``host``, ``port``, ``user``, ``password``,
    ``root`` (the directory the user sees as ``/``), ``pasv_ports`` (inclusive range), ``tls``,
    ``cert`` (a :class:`CertPair` when ``tls``), ``workdir``, ``log_path``.
    """

    name: ClassVar[str] = "ftp-server"
    binary_name: ClassVar[str] = ""
    supports_tls: ClassVar[bool] = False

    def __init__(
        self, *, tls: bool = False, promiscuous: bool = False, base_dir: Path | None = None
    ) -> None:
        if tls and not self.supports_tls:
            raise ValueError(f"{self.name}: TLS variant not provided")
        self.host = HOST
        self.user = USER
        self.password = PASSWORD
        self.tls = tls
        self.promiscuous = promiscuous
        self.cert: CertPair | None = None
        self._base_dir = base_dir
        self.port = 0
        self.pasv_ports = (0, 0)
        self._ports: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = Path()
        self.root = Path()
        self.log_path = Path()
        self.greeting = ""
        self.binary = Path()
        self.uid = self.gid = -1

    # -- to override
    def _prepare(self) -> list[str]:
        """Write config/data under ``self.workdir``; return the command line to run."""
        raise NotImplementedError

    # -- lifecycle
    def start(self, ready_timeout: float = 10.0) -> FTPServer:
        """Find the binary, write the config, run the server and wait for its greeting.

        Raises :class:`ServerUnavailable` when the server cannot run on this machine.
        """
        self.binary = find_binary(self.binary_name)
        require_root(self.name)
        self.uid, self.gid = ensure_system_user()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ftpdiag-{self.name}-", dir=self._base_dir))
        try:
            self._launch(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, ready_timeout: float) -> None:
        self.workdir.chmod(0o755)
        self.root = self.workdir / "root"
        self.root.mkdir()
        os.chown(self.root, self.uid, self.gid)
        self.log_path = self.workdir / "server.log"
        control = free_ports(1)
        pasv = free_ports(PASV_RANGE_SIZE)
        self._ports = control + pasv
        self.port = control[0]
        self.pasv_ports = (pasv[0], pasv[-1])
        if self.tls:
            self.cert = make_self_signed_cert(self.workdir / "tls")
        cmd = self._prepare()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 10.0) -> str:
        """Poll the control port until a ``220`` greeting arrives; return the greeting.

        Raises RuntimeError (with the server log) if the server exits, greets with another
        code, or says nothing within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode} before greeting:\n"
                    f"{self.log_text()}"
                )
            try:
                greeting = _read_greeting(self.host, self.port, deadline)
            except OSError as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            if not greeting.startswith("220"):
                raise RuntimeError(f"{self.name} greeted with {greeting!r}:\n{self.log_text()}")
            self.greeting = greeting
            return greeting
        raise RuntimeError(
            f"{self.name} gave no 220 greeting on {self.host}:{self.port} within {timeout}s "
            f"(last error: {last_error}):\n{self.log_text()}"
        )

    def stop(self) -> None:
        """Terminate the server's process group, wait a bounded time, then kill it."""
        proc, self.proc = self.proc, None
        stop_group(proc)  # session children outlive their parent: the whole group goes
        release_ports(self._ports)
        self._ports = []
        if self.workdir != Path() and not os.environ.get("FTPDIAG_KEEP_SERVER_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self, limit: int = 20000) -> str:
        """The server's log (stdout/stderr and log files), at most ``limit`` chars from the end."""
        parts = []
        for path in sorted(self.workdir.glob("*.log")) if self.workdir != Path() else []:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)[-limit:]

    def __enter__(self) -> FTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} tls={self.tls}>"

    # -- helpers
    def write_file(self, relpath: str, data: bytes) -> Path:
        """Put ``data`` at ``relpath`` under ``root`` (owned by the FTP user); return its path."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chown(path, self.uid, self.gid)
        return path

    def url(self, path: str = "") -> str:
        """``ftp://user:password@127.0.0.1:port/path`` for this server."""
        return f"ftp://{self.user}:{self.password}@{self.host}:{self.port}/{path.lstrip('/')}"


def _read_greeting(host: str, port: int, deadline: float) -> str:
    """Connect and read one complete FTP reply (handles multi-line ``220-`` greetings)."""
    with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as s:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        f = s.makefile("rb")
        first = f.readline(8192).decode("latin-1")
        if not first:
            raise ConnectionError("closed before greeting")
        reply = first
        if first[3:4] == "-":
            code = first[:3]
            while True:
                line = f.readline(8192).decode("latin-1")
                if not line:
                    raise ConnectionError("closed during greeting")
                reply += line
                if line[:3] == code and line[3:4] == " ":
                    break
        with contextlib.suppress(OSError):
            s.sendall(b"QUIT\r\n")
        return reply.rstrip("\r\n")


def _yes(flag: bool) -> str:
    return "YES" if flag else "NO"


class VsftpdServer(FTPServer):
    """vsftpd 3 (``background=NO``): local user ``ftpdiag`` via PAM plus read-only anonymous.

    TLS variant (``tls=True``): explicit FTPS (AUTH TLS), logins and data forced to TLS for
    the local user, ``require_ssl_reuse=YES`` (data connections must resume the control
    connection's TLS session; see :class:`SessionReuseFTP_TLS`). Anonymous stays plain.
    """

    name = "vsftpd"
    binary_name = "vsftpd"
    supports_tls = True
    anon_user = "anonymous"
    anon_password = "ftpdiag@example.invalid"

    def _prepare(self) -> list[str]:
        import pwd

        wd = self.workdir
        empty = wd / "empty"  # secure_chroot_dir: empty, root-owned, not writable
        empty.mkdir(mode=0o555)
        self.anon_root = wd / "anon"
        (self.anon_root / "pub").mkdir(parents=True)
        (self.anon_root / "welcome.txt").write_bytes(b"ftpdiag vsftpd anonymous area\r\n")
        self.anon_root.chmod(0o555)
        # vsftpd chdir()s to the anonymous account's home before it chroots to anon_root, so
        # the account needs a home that exists: Debian's ``ftp`` (/srv/ftp) when the vsftpd
        # package was installed, else the harness's own user (home ``/``); not ``nobody``,
        # whose home is /nonexistent ("500 OOPS: cannot change directory").
        try:
            entry = pwd.getpwnam("ftp")
            ftp_username = entry.pw_name if os.path.isdir(entry.pw_dir) else USER
        except KeyError:
            ftp_username = USER
        lines = {
            "listen": "YES",
            "listen_ipv6": "NO",
            "listen_address": self.host,
            "listen_port": self.port,
            "background": "NO",
            "ftpd_banner": f"ftpdiag-{self.name} ready",
            # local user
            "local_enable": "YES",
            "write_enable": "YES",
            "local_umask": "022",
            "local_root": self.root,
            "chroot_local_user": "YES",
            "allow_writeable_chroot": "YES",
            "pam_service_name": PAM_SERVICE,
            "userlist_enable": "NO",
            "tcp_wrappers": "NO",
            "session_support": "NO",
            # anonymous (its chroot must not be writable)
            "anonymous_enable": "YES",
            "no_anon_password": "YES",
            "anon_root": self.anon_root,
            "ftp_username": ftp_username,
            "anon_upload_enable": "NO",
            "anon_mkdir_write_enable": "NO",
            # privilege separation / sandboxing (clone() namespaces and seccomp may be
            # refused inside containers)
            "nopriv_user": "nobody",
            "secure_chroot_dir": empty,
            "isolate": "NO",
            "isolate_network": "NO",
            "seccomp_sandbox": "NO",
            # data connections
            "pasv_enable": "YES",
            "pasv_min_port": self.pasv_ports[0],
            "pasv_max_port": self.pasv_ports[1],
            "pasv_addr_resolve": "NO",
            "pasv_promiscuous": _yes(self.promiscuous),
            "port_enable": "YES",
            "port_promiscuous": _yes(self.promiscuous),
            "connect_from_port_20": "NO",
            # limits, logs
            "max_clients": 0,
            "max_per_ip": 0,
            "delay_failed_login": 0,
            "delay_successful_login": 0,
            "max_login_fails": 10,
            "idle_session_timeout": 120,
            "data_connection_timeout": 60,
            "dirmessage_enable": "NO",
            "use_localtime": "NO",
            "syslog_enable": "NO",
            "xferlog_enable": "YES",
            "xferlog_std_format": "NO",
            "log_ftp_protocol": "YES",
            "vsftpd_log_file": wd / "vsftpd.log",
        }
        if self.tls:
            assert self.cert is not None
            lines.update(
                {
                    "ssl_enable": "YES",
                    "rsa_cert_file": self.cert.cert,
                    "rsa_private_key_file": self.cert.key,
                    "allow_anon_ssl": "NO",
                    "force_local_logins_ssl": "YES",
                    "force_local_data_ssl": "YES",
                    "require_ssl_reuse": "YES",
                    "ssl_tlsv1": "YES",
                    "ssl_sslv2": "NO",
                    "ssl_sslv3": "NO",
                    "ssl_ciphers": "HIGH",
                }
            )
        conf = wd / "vsftpd.conf"
        conf.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return [str(self.binary), str(conf)]


class ProftpdServer(FTPServer):
    """ProFTPD 1.3.8 (``proftpd -n``): virtual user ``ftpdiag`` from an ``AuthUserFile``.

    Runs as root with ``User nobody``/``Group nogroup`` for the daemon; the session switches to
    the virtual user's uid/gid (the ``ftpdiag`` system user's) and is chrooted (``DefaultRoot``)
    to ``root``. Active-mode data connections come from an ephemeral port. TLS (``tls=True``):
    mod_tls from proftpd-mod-crypto (``ModulePath`` next to the binary), explicit FTPS required
    for login and data, session reuse not required (``NoSessionReuseRequired``).
    """

    name = "proftpd"
    binary_name = "proftpd"
    supports_tls = True

    def _module_dir(self) -> Path:
        return self.binary.parent.parent / "lib" / "proftpd"

    def _prepare(self) -> list[str]:
        wd = self.workdir
        passwd = wd / "ftpd.passwd"
        group = wd / "ftpd.group"
        passwd.write_text(
            f"{self.user}:{sha512_crypt(self.password)}:{self.uid}:{self.gid}:"
            f"ftpdiag:{self.root}:/bin/false\n"
        )
        group.write_text(f"{self.user}:x:{self.gid}:\n")
        passwd.chmod(0o600)
        group.chmod(0o600)
        nogroup = "nogroup" if _group_exists("nogroup") else "nobody"
        conf = f"""\
ServerType standalone
ServerName "ftpdiag-proftpd"
ServerIdent on "ftpdiag-proftpd ready"
DefaultServer on
Port {self.port}
DefaultAddress {self.host}
SocketBindTight on
UseIPv6 off
User nobody
Group {nogroup}
Umask 022
MaxInstances 50
PidFile {wd}/proftpd.pid
ScoreboardFile {wd}/proftpd.scoreboard
SystemLog {wd}/proftpd.log
TransferLog {wd}/xfer.log
WtmpLog off
UseReverseDNS off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
AuthOrder mod_auth_file.c
AuthUserFile {passwd}
AuthGroupFile {group}
RequireValidShell off
DefaultRoot ~
PassivePorts {self.pasv_ports[0]} {self.pasv_ports[1]}
AllowForeignAddress {"on" if self.promiscuous else "off"}
AllowOverwrite on
AllowStoreRestart on
TimeoutIdle 120
TimeoutNoTransfer 120
MaxLoginAttempts 10
"""
        if self.tls:
            assert self.cert is not None
            conf += f"""\
ModulePath {self._module_dir()}
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSLog {wd}/tls.log
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired on
  TLSRSACertificateFile {self.cert.cert}
  TLSRSACertificateKeyFile {self.cert.key}
  TLSOptions NoSessionReuseRequired
  TLSVerifyClient off
</IfModule>
"""
        path = wd / "proftpd.conf"
        path.write_text(conf)
        return [str(self.binary), "-n", "-c", str(path)]


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


class PureftpdServer(FTPServer):
    """Pure-FTPd 1.0.50 in the foreground (no ``-B``): virtual user ``ftpdiag`` from a PureDB.

    The passwd line is written here with a SHA-512 crypt hash (``pure-pw useradd`` would use
    argon2, which makes every login take seconds), then ``pure-pw mkdb`` builds the PureDB.
    Flags: ``-S 127.0.0.1,PORT -p MIN:MAX -H`` (no DNS) ``-A`` (chroot) ``-E`` (no anonymous).
    TLS (``tls=True``): ``-Y 2`` (TLS required) with the certificate file ``-2 cert,key``.
    Pure-FTPd allows at most half as many concurrent users as it has passive ports (here
    ``PASV_RANGE_SIZE // 2``) and answers a failed login only after a built-in delay of a few
    seconds. As root, its active-mode data connections come from port 20.
    """

    name = "pure-ftpd"
    binary_name = "pure-ftpd"
    supports_tls = True

    def _prepare(self) -> list[str]:
        wd = self.workdir
        pure_pw = find_binary("pure-pw")
        passwd = wd / "pureftpd.passwd"
        pdb = wd / "pureftpd.pdb"
        # user:hash:uid:gid:gecos:home/./:18 fields in all (see pure-pw(8)).
        fields = [
            self.user,
            sha512_crypt(self.password),
            str(self.uid),
            str(self.gid),
            "",
            f"{self.root}/./",
        ] + [""] * 12
        passwd.write_text(":".join(fields) + "\n")
        passwd.chmod(0o600)
        _run([str(pure_pw), "mkdb", str(pdb), "-f", str(passwd)])
        cmd = [
            str(self.binary),
            "-S",
            f"{self.host},{self.port}",
            "-l",
            f"puredb:{pdb}",
            "-p",
            f"{self.pasv_ports[0]}:{self.pasv_ports[1]}",
            "-H",  # no reverse DNS
            "-A",  # chroot everyone
            "-E",  # no anonymous logins
            "-4",
            "-u",
            "1",  # the ftpdiag system user has a small uid
            "-c",
            "50",
            "-C",
            "50",
            "-I",
            "2",  # idle timeout, minutes
            "-g",
            str(wd / "pure-ftpd.pid"),
            "-O",
            f"clf:{wd / 'xfer.log'}",
        ]
        if self.promiscuous:
            cmd.append("-w")  # allow FXP (PORT/PASV peers other than the client) for users
        if self.tls:
            assert self.cert is not None
            cmd += ["-Y", "2", "-2", f"{self.cert.cert},{self.cert.key}"]
        return cmd


SERVERS: dict[str, type[FTPServer]] = {
    "vsftpd": VsftpdServer,
    "proftpd": ProftpdServer,
    "pure-ftpd": PureftpdServer,
}


ServerT = TypeVar("ServerT", bound=FTPServer)


@contextlib.contextmanager
def running(server_cls: type[ServerT], **kwargs: Any) -> Iterator[ServerT]:
    """Pytest-friendly context manager: start the server, yield it, always stop it.

    A server that cannot run here fails the test under CI and skips it otherwise
    (see :func:`unavailable`).
    """
    server = server_cls(**kwargs)
    try:
        server.start()
    except ServerUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()
