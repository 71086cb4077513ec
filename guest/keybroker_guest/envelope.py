"""Opening a release envelope: ``RSA-OAEP(ephemeral AES-256 key) || AES-KWP(secret)``.

The layout of PKCS#11 ``CKM_RSA_AES_KEY_WRAP`` and of Azure Managed HSM's secure key release
(docs/api.md, "Release"): the RSA block is as long as the modulus and decrypts, with OAEP
whose hash and MGF1 hash are ``oaep_hash``, to an AES key; the rest unwraps under it with
RFC 5649. Some HSMs zero-pad the secret to a multiple of 8 bytes before wrapping, so the
envelope states the true length and the padding must be zeros.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from keybroker_guest.errors import Untrusted

OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,  # what SoftHSM 2.6.1 can wrap with (docs/architecture.md §4)
    "sha256": hashes.SHA256,
}


def open_envelope(
    private_key: rsa.RSAPrivateKey, ciphertext: bytes, oaep_hash: str, secret_length: int
) -> bytes:
    """The secret; ``Untrusted`` when the envelope does not open to ``secret_length`` bytes."""
    algorithm = OAEP_HASHES.get(oaep_hash)
    if algorithm is None:
        raise Untrusted(f"envelope OAEP hash {oaep_hash[:16]!r} is not sha1 or sha256")
    block = (private_key.key_size + 7) // 8
    if len(ciphertext) <= block:
        raise Untrusted("envelope is shorter than its RSA block")
    try:
        kek = private_key.decrypt(
            ciphertext[:block],
            padding.OAEP(mgf=padding.MGF1(algorithm()), algorithm=algorithm(), label=None),
        )
    except ValueError:
        raise Untrusted("envelope RSA-OAEP block does not decrypt with this guest's key") from None
    try:
        padded = aes_key_unwrap_with_padding(kek, ciphertext[block:])
    except (InvalidUnwrap, ValueError):
        raise Untrusted("envelope AES-KWP block fails its integrity check") from None
    if not 0 <= secret_length <= len(padded) or any(padded[secret_length:]):
        raise Untrusted("envelope secret does not match its stated length")
    return padded[:secret_length]
