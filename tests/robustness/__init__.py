"""Issue 8: robustness — faults, hostile input and long runs, with nothing lost and nothing
leaked."""
