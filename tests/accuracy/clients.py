"""Real FTP clients for the accuracy matrix, each driven through one ordinary job: list the
directory, download ``data.bin`` (checked byte for byte), upload a file (checked on the server).

Every client is a program or library people use, run as they would run it (its own defaults,
probes and fallbacks included: that is what ftpdiag must not mistake for failures). Each
returns nothing and raises when the job did not work: a matrix cell whose transfer fails is a
broken test, not a false alarm.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.interop.servers import unavailable

#: Bound on every client subprocess.
TIMEOUT = 40


@dataclass(frozen=True)
class Job:
    """Where the client connects (the proxy), as whom, and what it must find and leave."""

    host: str
    port: int
    user: str
    password: str
    data: bytes  # the content of data.bin on the server
    root: Path  # the server's directory of the user, to check uploads
    work: Path  # the client's working directory

    def check_download(self, path: Path) -> None:
        got = path.read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(self.data).digest(), (
            f"{path.name}: {len(got)} bytes, expected {len(self.data)}"
        )

    def check_upload(self, name: str, data: bytes) -> None:
        assert (self.root / name).read_bytes() == data, f"upload {name} differs"


UPLOAD = b"uploaded by the accuracy matrix\n" * 500


def tool(name: str) -> str:
    """The path of a client program, or skip (fail under CI) when it is not installed."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if found is None:
        unavailable(f"{name} not found: run scripts/test.sh, which installs it")
    return found


def _run(cmd: list[str], job: Job, stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=job.work,
        env={**os.environ, "HOME": str(job.work)},  # lftp/ncftp keep state under $HOME
        check=False,
    )
    assert done.returncode == 0, f"{cmd[0]} exited {done.returncode}: {done.stderr}{done.stdout}"
    return done.stdout


# ---- Python clients --------------------------------------------------------------------------
def ftplib_operations(ftp: ftplib.FTP, job: Job) -> None:
    """What every ftplib client of the matrix does once logged in: list, download, upload,
    quit; then the bytes are checked on both sides."""
    ftp.retrlines("LIST", lambda _: None)
    out = io.BytesIO()
    ftp.retrbinary("RETR data.bin", out.write)
    (job.work / "out.bin").write_bytes(out.getvalue())
    ftp.storbinary("STOR up-ftplib.bin", io.BytesIO(UPLOAD))
    ftp.quit()
    job.check_download(job.work / "out.bin")
    job.check_upload("up-ftplib.bin", UPLOAD)


def ftplib_client(passive: bool) -> Callable[[Job], None]:
    def run(job: Job) -> None:
        ftp = ftplib.FTP(timeout=10)
        ftp.connect(job.host, job.port)
        ftp.login(job.user, job.password)
        ftp.set_pasv(passive)
        ftplib_operations(ftp, job)

    return run


def aioftp_client(job: Job) -> None:
    import aioftp

    async def session() -> None:
        async with aioftp.Client.context(
            job.host, job.port, job.user, job.password, socket_timeout=10
        ) as client:
            await client.list("/")
            await client.download("data.bin", job.work / "out.bin", write_into=True)
            await client.upload(job.work / "local.bin", "up-aioftp.bin", write_into=True)

    (job.work / "local.bin").write_bytes(UPLOAD)
    asyncio.run(asyncio.wait_for(session(), TIMEOUT))
    job.check_download(job.work / "out.bin")
    job.check_upload("up-aioftp.bin", UPLOAD)


# ---- programs --------------------------------------------------------------------------------
CURL_MODES = {
    "EPSV": ["--ftp-pasv"],
    "PASV": ["--ftp-pasv", "--disable-epsv"],
    "PORT": ["--ftp-port", "127.0.0.1", "--disable-eprt"],
    "EPRT": ["--ftp-port", "127.0.0.1"],
}


def curl_client(mode: str) -> Callable[[Job], None]:
    def run(job: Job) -> None:
        base = [tool("curl"), "-sS", "--max-time", "20", "-u", f"{job.user}:{job.password}"]
        base += CURL_MODES[mode]
        url = f"ftp://{job.host}:{job.port}/"
        _run([*base, url], job)
        _run([*base, "-o", "out.bin", url + "data.bin"], job)
        (job.work / "local.bin").write_bytes(UPLOAD)
        _run([*base, "-T", "local.bin", url + "up-curl.bin"], job)
        job.check_download(job.work / "out.bin")
        job.check_upload("up-curl.bin", UPLOAD)

    return run


def lftp_client(settings: str) -> Callable[[Job], None]:
    """lftp with its defaults (FEAT, OPTS UTF8 ON, AUTH TLS tried, EPSV, MLSD), one list, one
    get, one put, and a ``pget -n 3``: three connections, each fetching a REST range."""

    def run(job: Job) -> None:
        (job.work / "local.bin").write_bytes(UPLOAD)
        script = (
            "set net:max-retries 1; set net:timeout 8; set cmd:fail-exit yes; "
            f"set ssl:verify-certificate no; {settings} "
            f"open -u {job.user},{job.password} {job.host}:{job.port}; "
            "ls; get data.bin -o out.bin; put local.bin -o up-lftp.bin; "
            "pget -n 3 data.bin -o pget.bin"
        )
        _run([tool("lftp"), "-c", script], job)
        job.check_download(job.work / "out.bin")
        job.check_download(job.work / "pget.bin")
        job.check_upload("up-lftp.bin", UPLOAD)

    return run


def wget_client(passive: bool) -> Callable[[Job], None]:
    def run(job: Job) -> None:
        url = f"ftp://{job.host}:{job.port}/data.bin"
        cmd = [tool("wget"), "-q", "-T", "10", "-t", "1", f"--ftp-user={job.user}"]
        cmd += [f"--ftp-password={job.password}", "-O", "out.bin", url]
        if not passive:
            cmd.insert(1, "--no-passive-ftp")
        _run(cmd, job)
        job.check_download(job.work / "out.bin")

    return run


def tnftp_client(job: Job) -> None:
    (job.work / "local.bin").write_bytes(UPLOAD)
    script = (
        f"user {job.user} {job.password}\nbinary\nls\nget data.bin out.bin\n"
        "put local.bin up-tnftp.bin\nquit\n"
    )
    _run([tool("tnftp"), "-n", job.host, str(job.port)], job, stdin=script)
    job.check_download(job.work / "out.bin")
    job.check_upload("up-tnftp.bin", UPLOAD)


def ncftp_client(job: Job) -> None:
    (job.work / "up-ncftp.bin").write_bytes(UPLOAD)
    (job.work / "dl").mkdir(exist_ok=True)
    auth = ["-u", job.user, "-p", job.password, "-P", str(job.port), "-t", "10"]
    _run([tool("ncftpls"), "-l", *auth, f"ftp://{job.host}/"], job)
    _run([tool("ncftpget"), *auth, job.host, str(job.work / "dl"), "/data.bin"], job)
    _run([tool("ncftpput"), *auth, job.host, "/", str(job.work / "up-ncftp.bin")], job)
    job.check_download(job.work / "dl" / "data.bin")
    job.check_upload("up-ncftp.bin", UPLOAD)


def rclone_client(job: Job) -> None:
    """rclone's FTP backend (Go's jlaffaye/ftp): EPSV, MLSD when offered, parallel transfers."""
    rclone = tool("rclone")
    obscured = _run([rclone, "obscure", job.password], job).strip()
    remote = [
        f"--ftp-host={job.host}",
        f"--ftp-port={job.port}",
        f"--ftp-user={job.user}",
        f"--ftp-pass={obscured}",
        "--config=/dev/null",
        "--contimeout=10s",
        "--timeout=20s",
        "--retries=1",
        "--low-level-retries=1",
    ]
    (job.work / "local.bin").write_bytes(UPLOAD)
    _run([rclone, "lsf", ":ftp:", *remote], job)
    _run([rclone, "copyto", ":ftp:data.bin", str(job.work / "out.bin"), *remote], job)
    _run([rclone, "copyto", str(job.work / "local.bin"), ":ftp:up-rclone.bin", *remote], job)
    job.check_download(job.work / "out.bin")
    job.check_upload("up-rclone.bin", UPLOAD)


CLIENTS: dict[str, Callable[[Job], None]] = {
    "ftplib-pasv": ftplib_client(True),
    "ftplib-port": ftplib_client(False),
    "aioftp": aioftp_client,
    **{f"curl-{mode.lower()}": curl_client(mode) for mode in CURL_MODES},
    "lftp": lftp_client(""),
    "lftp-active": lftp_client("set ftp:passive-mode off;"),
    "wget": wget_client(True),
    "wget-active": wget_client(False),
    "tnftp": tnftp_client,
    "ncftp": ncftp_client,
    "rclone": rclone_client,
}
