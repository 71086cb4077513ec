"""Micro-benchmarks of the broker's hot paths (``python -m broker.bench.<name>``)."""
