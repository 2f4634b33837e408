"""Regenerate the client-log fixtures: run the real clients (curl -v, curl --trace-ascii,
lftp -d, tnftp, GNU inetutils ftp, ncftpget -d, Python ftplib) against pyftpdlib servers in
failure configurations and keep what they print; run curl and lftp against vsftpd and ProFTPD
(tests/interop/servers.py, as root) and keep the servers' logs. Not run in CI (the outputs
are committed); run it by hand after a client upgrade::

    python -m tests.importers.make_fixtures

The machine's ports and paths are replaced by fixed ones, so the files do not change from run
to run except for the servers' passive ports.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.fake_servers import FakeFTPServer, Reply, make_file

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "s3cret-pw"
WRONG = "wrong-pw-123"
PORT = "2121"

# scenario → what the fake server does, what the client asks for, and with which password
SCENARIOS: dict[str, tuple[list[Reply], str, str]] = {
    "badpw": ([], "file.bin", WRONG),
    "missing": ([], "missing.txt", PASSWORD),
    "pasv_unreachable": (
        [
            Reply("PASV", 227, "Entering passive mode (127,0,0,1,0,{low})."),
            Reply("EPSV", 229, "Entering extended passive mode (|||{closed}|)."),
        ],
        "file.bin",
        PASSWORD,
    ),
    "ok": ([], "file.bin", PASSWORD),  # a healthy download: no false alarm
    # the server advertises 127.0.0.2 in PASV (behind NAT): curl and lftp use 127.0.0.1
    "nat": ([], "nat/file.bin", PASSWORD),
    "tls_required": (
        [Reply("USER", 530, "Non-anonymous sessions must use encryption.")],
        "file.bin",
        PASSWORD,
    ),
}


# Clients whose healthy run prints a log (a script without debug output prints nothing; lftp
# probes OPTS UTF8 before login, which is the engine's business, not the importer's).
HEALTHY_CLIENTS = ("curl_v", "curl_trace", "tnftp", "gnu_ftp", "ncftp", "ftplib_debug")
NAT_CLIENTS = ("curl_v", "curl_trace", "lftp")
NAT_PATH = "nat/"


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _curl(url: str, pw: str, trace: bool) -> list[str]:
    """curl on PASV; it dials the PASV address as given, except for the NAT scenario, where
    its default (use the control connection's address) is the point."""
    out = ["--trace-ascii", "-"] if trace else ["-v"]
    skip = [] if NAT_PATH in url else ["--no-ftp-skip-pasv-ip"]
    return ["curl", *out, "-sS", "--max-time", "5", "--disable-epsv", *skip,
            "-u", f"user:{pw}", url, "-o", "/dev/null"]  # fmt: skip


def _lftp(host: str, port: int, path: str, pw: str, user: str = "user") -> list[str]:
    # lftp refuses to write to /dev/null ("File exists"): a fresh file each time instead.
    out = Path(tempfile.mkdtemp()) / "download"
    script = (
        "set net:max-retries 1; set net:timeout 3; set ftp:prefer-epsv no; "
        f"set ftp:ssl-allow no; get {path} -o {out}; bye"
    )
    return ["lftp", "-d", "-e", script, "-u", f"{user},{pw}", f"ftp://{host}:{port}"]


FTPLIB_SCRIPT = """
import ftplib, sys
ftp = ftplib.FTP()
ftp.set_debuglevel({debug})
ftp.connect("{host}", {port}, timeout=5)
ftp.login("user", "{pw}")
ftp.retrbinary("RETR {path}", lambda chunk: None)
ftp.quit()
"""


def _run(cmd: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe keeps the client's errors where they happened
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout


def _normalise(text: str, port: int, tmp: str) -> str:
    """Fixed paths and control port (the servers' passive ports still vary from run to run)."""
    text = text.replace(tmp, "/srv/ftp")
    text = re.sub(r'File "/[^"]*/(ftplib|socket)\.py"', r'File "/usr/lib/python3/\1.py"', text)
    return re.sub(rf"\b{port}\b", PORT, text)


def _clients(host: str, port: int, path: str, pw: str, tmp: Path) -> dict[str, Callable[[], str]]:
    url = f"ftp://{host}:{port}/{path}"
    script = tmp / "download.py"

    def ftplib_run(debug: int) -> str:
        script.write_text(FTPLIB_SCRIPT.format(debug=debug, host=host, port=port, pw=pw, path=path))
        return _run([sys.executable, str(script)])

    tnftp_script = f"open {host} {port}\nuser user {pw}\nget {path} /dev/null\nquit\n"

    def ncftp() -> str:
        cmd = ["ncftpget", "-d", "stdout", "-t", "5", "-r", "0", "-u", "user", "-p", pw, "-P",
               str(port), host, name, f"/{path}"]  # fmt: skip
        text = _run(cmd)  # starts with the machine's uname and /etc/issue: cut them off
        return text.split("Glibc: ", 1)[-1].split("\n", 1)[-1]

    name = str(tmp / "ncftp")
    Path(name).mkdir(exist_ok=True)
    return {
        "gnu_ftp": lambda: _run(["inetutils-ftp", "-n", "-v"], stdin=tnftp_script),
        "ncftp": ncftp,
        "curl_v": lambda: _run(_curl(url, pw, trace=False)),
        "curl_trace": lambda: _run(_curl(url, pw, trace=True)),
        "lftp": lambda: _run(_lftp(host, port, path, pw)),
        "tnftp": lambda: _run(["tnftp", "-n", "-v"], stdin=tnftp_script),
        "ftplib_traceback": lambda: ftplib_run(0),
        "ftplib_debug": lambda: ftplib_run(1),
    }


def server_logs() -> None:
    """The real servers' own logs of a wrong password and a missing file (vsftpd with
    log_ftp_protocol, also in its TLS-required variant; ProFTPD's SystemLog, and its TLSLog of
    clients that refuse its certificate or do not try TLS), via curl."""
    from tests.interop.servers import ProftpdServer, VsftpdServer

    runs = {
        "vsftpd.protocol": (VsftpdServer, {}, "vsftpd.log"),
        "vsftpd.tls_required": (VsftpdServer, {"tls": True}, "vsftpd.log"),
        "proftpd.systemlog": (ProftpdServer, {}, "server.log"),
        "proftpd.tlslog": (ProftpdServer, {"tls": True}, "tls.log"),
    }
    for name, (server, options, log) in runs.items():
        with server(**options) as srv:
            tls = ["--ssl-reqd"] if options else []  # refuses the self-signed certificate
            for pw, path in ((WRONG, "file.bin"), (srv.password, "missing.txt")):
                url = f"ftp://{srv.host}:{srv.port}/{path}"
                _run(["curl", "-sS", "--max-time", "5", *tls, "-u", f"{srv.user}:{pw}", url,
                      "-o", "/dev/null"])  # fmt: skip
            if options:  # and a client that does not even try TLS
                _run(["curl", "-sS", "--max-time", "5", "-u", f"{srv.user}:{srv.password}",
                      f"ftp://{srv.host}:{srv.port}/file.bin", "-o", "/dev/null"])  # fmt: skip
            text = (srv.workdir / log).read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"(\d\d:\d\d:\d\d,\d+) \S+ proftpd", r"\1 files proftpd", text)
        (FIXTURES / f"{name}.log").write_text(text, encoding="utf-8")


def against_real_servers() -> None:
    """curl -v and lftp -d against vsftpd, ProFTPD and Pure-FTPd: a wrong password and a
    missing file, in each server's own words."""
    from tests.interop.servers import SERVERS

    for server_name, server in SERVERS.items():
        with server() as srv:
            for scenario, pw, path in (("badpw", WRONG, "file.bin"),
                                       ("missing", srv.password, "missing.txt")):  # fmt: skip
                url = f"ftp://{srv.host}:{srv.port}/{path}"
                runs = {
                    "curl_v": ["curl", "-v", "-sS", "--max-time", "10", "-u",
                               f"{srv.user}:{pw}", url, "-o", "/dev/null"],
                    "lftp": _lftp(srv.host, srv.port, path, pw, user=srv.user),
                }  # fmt: skip
                for client, cmd in runs.items():
                    text = _normalise(_run(cmd), srv.port, "/nonexistent")
                    out = FIXTURES / f"{client}.{server_name.replace('-', '')}.{scenario}.log"
                    out.write_text(text, encoding="utf-8")


def tls_untrusted() -> None:
    """curl and lftp asking for TLS from vsftpd, whose self-signed certificate they do not
    trust: the failure is the client's own (a TLS error, no reply explains it)."""
    from tests.interop.servers import VsftpdServer

    with VsftpdServer(tls=True) as srv:
        url = f"ftp://{srv.host}:{srv.port}/file.bin"
        clients = {
            "curl_v": ["curl", "-v", "-sS", "--max-time", "5", "--ssl-reqd", "-u",
                       f"{srv.user}:{srv.password}", url, "-o", "/dev/null"],
            "lftp": ["lftp", "-d", "-e", "set net:max-retries 1; set ftp:ssl-force yes; ls; bye",
                     "-u", f"{srv.user},{srv.password}", f"ftp://{srv.host}:{srv.port}"],
        }  # fmt: skip
        for client, cmd in clients.items():
            text = _normalise(_run(cmd), srv.port, "/nonexistent")
            (FIXTURES / f"{client}.tls_untrusted.log").write_text(text, encoding="utf-8")


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        make_file(tmp / "root", "file.bin", 5000)
        make_file(tmp / "root", "nat/file.bin", 5000)
        for scenario, (faults, path, pw) in SCENARIOS.items():
            closed = _closed_port()
            filled = [
                Reply(f.command, f.code, f.text.format(low=closed % 256, closed=closed))
                for f in faults
            ]
            if scenario == "pasv_unreachable":  # PASV spells the port as two bytes
                filled[0] = Reply(
                    "PASV",
                    227,
                    f"Entering passive mode (127,0,0,1,{closed // 256},{closed % 256}).",
                )
            masquerade = "127.0.0.2" if scenario == "nat" else None
            with FakeFTPServer(
                tmp / "root", faults=filled, password=PASSWORD, masquerade_address=masquerade
            ) as srv:
                host, port = srv.address
                for client, run in _clients(host, port, path, pw, tmp).items():
                    if scenario == "ok" and client not in HEALTHY_CLIENTS:
                        continue
                    if scenario == "nat" and client not in NAT_CLIENTS:
                        continue
                    text = _normalise(run(), port, name)
                    (FIXTURES / f"{client}.{scenario}.log").write_text(text, encoding="utf-8")
        port = _closed_port()
        for client, run in _clients("127.0.0.1", port, "file.bin", PASSWORD, tmp).items():
            text = _normalise(run(), port, name)
            (FIXTURES / f"{client}.refused.log").write_text(text, encoding="utf-8")
    server_logs()
    tls_untrusted()
    against_real_servers()


if __name__ == "__main__":
    main()
