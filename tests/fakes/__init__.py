"""Test doubles shared by unit tests and the micro-benchmarks: in-memory stand-ins for what
production keeps elsewhere."""
