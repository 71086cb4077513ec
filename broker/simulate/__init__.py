"""Synthetic evidence for tests, the simulated guest and the demo: fake vendor chains whose
roots a verifier trusts only through an ``insecure_`` setting."""
