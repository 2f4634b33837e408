"""The pytest plugin as a user meets it: test files run by ``pytester`` in a fresh pytest."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

# The README example: a mid-transfer 426 reproduced and asserted in under 20 lines.
README_EXAMPLE = """\
import ftplib, pytest
from pyftpdlib.handlers import DTPHandler
from ftpdiag.testing import assert_diagnosed

class CutAfter64K(DTPHandler):  # downloads stop after 64 KiB, then pyftpdlib replies 426
    def send(self, data):
        if self.tot_bytes_sent >= 65536:
            self.del_channel(); self.call_later(0, self.handle_close); return 0
        return super().send(data[: 65536 - self.tot_bytes_sent])

def test_aborted_download_is_diagnosed(ftpdiag_sandbox, ftpdiag_proxy):
    server = ftpdiag_sandbox(dtp_handler=CutAfter64K, use_sendfile=False)
    (server.root / "big.bin").write_bytes(bytes(1 << 20))
    proxy = ftpdiag_proxy(server.address)
    ftp = ftplib.FTP(timeout=5); ftp.connect(*proxy.address); ftp.login("diag", "diag")
    with pytest.raises(ftplib.error_temp, match="426"):
        ftp.retrbinary("RETR big.bin", lambda chunk: None)
    ftp.quit()
    assert_diagnosed(proxy, "transfer.aborted", code=426, bytes=65536)
"""

FAILING_EXAMPLE = """\
import ftplib
from ftpdiag.testing import assert_diagnosed

def test_expects_an_abort_that_never_happens(ftpdiag_sandbox, ftpdiag_proxy):
    server = ftpdiag_sandbox()
    proxy = ftpdiag_proxy(server.address)
    ftp = ftplib.FTP(timeout=5); ftp.connect(*proxy.address); ftp.login("diag", "diag")
    ftp.quit()
    proxy.wait_for("session.summary")
    assert_diagnosed(proxy, "transfer.aborted", code=426, cause="server_reset")
"""


def test_readme_example_is_short() -> None:
    """The example the README shows stays under 20 lines."""
    assert len(README_EXAMPLE.splitlines()) < 20


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    """A user's test reproducing a mid-transfer 426 with the plugin's fixtures passes."""
    pytester.makepyfile(test_readme=README_EXAMPLE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    result.assert_outcomes(passed=1)


def test_failing_assert_diagnosed_is_readable(pytester: pytest.Pytester) -> None:
    """A failed assert_diagnosed says what was expected and lists what was diagnosed instead."""
    pytester.makepyfile(test_failing=FAILING_EXAMPLE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: no diagnosis 'transfer.aborted' code=426 {'cause': 'server_reset'};"
            " diagnosed: [[]('greeting.ready', 220), ('login.ok', 230)[]]",
        ]
    )
