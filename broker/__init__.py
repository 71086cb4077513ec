"""keybroker: attestation-gated secret release from a PKCS#11 HSM."""

__version__ = "0.1.0"
