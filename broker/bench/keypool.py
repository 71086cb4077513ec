"""Ephemeral guest keys, generated before the load starts and kept for later runs.

RSA-3072 key generation costs about 250 ms (ARCHITECTURE §6): a generator that made one key
per release would measure itself. Guests draw keys from this pool in turn instead; every
attestation still binds a fresh nonce to the key, so the broker's work is unchanged.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_BITS = 3072
_MARKER = b"-----END PRIVATE KEY-----\n"


def _generate(_: int) -> bytes:
    key = rsa.generate_private_key(65537, RSA_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_pool(path: Path, size: int, processes: int) -> None:
    """Make ``path`` hold at least ``size`` PEM keys, generating the missing ones in parallel."""
    have = path.read_bytes().count(_MARKER) if path.exists() else 0
    missing = size - have
    if missing <= 0:
        return
    with ProcessPoolExecutor(max_workers=max(1, processes)) as pool:
        fresh = b"".join(pool.map(_generate, range(missing)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(fresh)
    path.chmod(0o600)


def load_pool(path: Path, size: int) -> list[rsa.RSAPrivateKey]:
    """The first ``size`` keys of the pool (the keys were checked when they were made)."""
    keys = []
    for block in path.read_bytes().split(_MARKER)[:size]:
        if not block.strip():
            continue
        key = serialization.load_pem_private_key(
            block + _MARKER, password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA key")
        keys.append(key)
    return keys
