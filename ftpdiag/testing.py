"""pytest plugin for ftpdiag users (fixtures and assertion helpers)."""
