"""Reference values computed from the artifacts a guest is launched from.

``keybroker reference compute snp|tdx|nitro`` reads a firmware (and kernel) or an enclave
image, computes the measurement the TEE will report for it, and writes a reference entry that
records where the value came from (:mod:`broker.policy.provenance`). Guide:
docs/reference-values.md.
"""
