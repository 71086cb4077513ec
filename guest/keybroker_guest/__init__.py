"""keybroker's guest side, for confidential VMs and initramfs images.

Challenge, evidence (Linux configfs-tsm for SEV-SNP and TDX), attest, release, the envelope
opened with an ephemeral key and checked against the broker's pinned signing key, and the key
written to stdout or a 0600 file; the clevis pin ``keybroker`` on top. Its one third-party
dependency is ``cryptography``: HTTP and TLS come from the standard library. It shares no code
with the broker, only the wire format (docs/api.md); the broker's tests drive it as a guest.
"""

__version__ = "0.1.0"
