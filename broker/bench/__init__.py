"""Benchmarks, run as ``python -m broker.bench.<name>``: they print rates."""
