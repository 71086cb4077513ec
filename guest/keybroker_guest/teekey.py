"""The guest's ephemeral RSA key: the key a release is wrapped to, made for one fetch.

The broker seals a release to an RSA-3072 or RSA-4096 key with e = 65537 (docs/api.md,
"Attest"); it is sent as a JWK (RFC 7517 §6.3.1) and, for Nitro, as DER
SubjectPublicKeyInfo. The private half never leaves this process.
"""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keybroker_guest.encoding import b64url

RSA_BITS = (3072, 4096)
EXPONENT = 65537


def new_tee_key(bits: int = 3072) -> rsa.RSAPrivateKey:
    if bits not in RSA_BITS:
        raise ValueError(f"tee key size {bits} is not one of {RSA_BITS}")
    return rsa.generate_private_key(EXPONENT, bits)


def _unsigned(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def rsa_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """``{"kty": "RSA", "n", "e"}`` of ``public_key``, big-endian unsigned, base64url."""
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": b64url(_unsigned(numbers.n)), "e": b64url(_unsigned(numbers.e))}


def public_jwk(private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """:func:`rsa_jwk` of the public half."""
    return rsa_jwk(private_key.public_key())


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace; base64url.

    The members this client hashes are base64url values and fixed names, which JSON writes
    without escapes, so compact sorted JSON is the RFC's exact input."""
    text = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def spki_der(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
