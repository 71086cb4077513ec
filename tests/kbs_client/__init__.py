"""A KBS client written from the protocol (Trustee RCAR 0.4.0), for the tests.

It does what the reference client (guest-components' ``kbs_protocol`` with kbs-types) does on
the wire, as ``tests/vectors/kbs/`` and docs/kbs.md describe it, and shares no code with the
server: its own RFC 8785 canonicalisation, its own kbs-types shapes, its own SNP serde writer,
and PyPI ``jwcrypto`` to open the JWE once the AAD has been regenerated the kbs-types way. It
imports from ``broker`` only the simulated vendors that sign its evidence.
"""
