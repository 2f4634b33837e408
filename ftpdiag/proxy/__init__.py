"""Twisted glue: sockets and timers in, core events out; core outputs carried out here."""
