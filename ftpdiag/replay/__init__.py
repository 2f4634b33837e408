"""Replay a recorded FTP session as a fake server: ``script`` (sans-IO) and ``server``
(pyftpdlib glue)."""
