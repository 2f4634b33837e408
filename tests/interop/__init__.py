"""Interop tests: ftpdiag against real FTP servers and clients from Debian packages."""
