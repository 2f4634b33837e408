"""The pyftpdlib names the fake servers use, imported once and quietly.

pyftpdlib is built on asynchat/asyncore, whose import emits a
DeprecationWarning on Python 3.11.  That is pyftpdlib's business, not a
finding of our test run, and under ``-W error`` it would even abort
collection, so the import happens here with that one warning silenced.
Import pyftpdlib classes from this module (tests included) so the first
import of pyftpdlib always goes through this guard.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.log import logger
    from pyftpdlib.servers import FTPServer

__all__ = [
    "DTPHandler",
    "DummyAuthorizer",
    "FTPHandler",
    "FTPServer",
    "IOLoop",
    "ThrottledDTPHandler",
    "logger",
]
