"""Synthetic evidence kits: fake vendor roots and endorsements that sign test evidence.

Everything here is trusted only through ``extra_roots`` (the ``insecure_`` settings), never by
default, and every root it makes is named ``insecure-test-...`` wherever it appears.
"""
