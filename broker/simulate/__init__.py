"""Synthetic evidence for tests and the simulated guests: fake vendor chains that sign.

Roots made here are trusted only when passed as ``extra_roots`` (``insecure-test-...``).
"""
