"""Benchmarks of the ftpdiag proxy against direct connections (``python -m bench``)."""
