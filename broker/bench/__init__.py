"""Benchmarks and micro-benchmarks, runnable as ``python -m broker.bench.<name>``."""
