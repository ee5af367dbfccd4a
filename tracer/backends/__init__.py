"""Backends other than the NumPy engine that record the same trace schema."""
