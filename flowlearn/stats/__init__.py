"""Statistics (reserved for summarizers and tests; empty so far)."""
