"""Recommendation (reserved; empty so far)."""
