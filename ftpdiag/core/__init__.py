"""The sans-IO protocol core: bytes and facts in, commands and facts out.

Nothing in this package touches a socket, a reactor or a logger, so every module can be
exercised by feeding it bytes in a unit test and reused for offline analysis of saved logs.
"""
