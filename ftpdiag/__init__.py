"""ftpdiag: a live FTP session diagnostic proxy."""

__version__ = "0.1.0"
