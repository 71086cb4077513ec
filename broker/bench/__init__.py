"""Micro-benchmarks runnable as ``python -m broker.bench.<name>``."""
