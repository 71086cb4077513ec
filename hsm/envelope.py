"""The release envelope: ``RSA-OAEP(ephemeral AES-256) || AES-KWP(secret)``.

This is the output layout of PKCS#11 v3.0 ``CKM_RSA_AES_KEY_WRAP`` (§2.1.21) and of Azure
Managed HSM's secure key release, produced here by two ``C_WrapKey`` calls inside the HSM. A
guest opens it in software (this module's :func:`open_envelope`, used by the simulated guest
and the tests) or with its own vTPM/HSM.

SoftHSM 2.6.1 zero-pads a secret whose length is not a multiple of 8 before RFC 5649 wrapping
and records the padded length, so the unwrapped bytes may carry up to 7 trailing zeros; the
envelope therefore states the true ``secret_length`` and the guest truncates to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding


class OaepHash(StrEnum):
    SHA1 = "sha1"
    SHA256 = "sha256"

    @property
    def algorithm_name(self) -> str:
        """The name Azure and PKCS#11 give the combined wrap with this OAEP hash."""
        return "CKM_RSA_AES_KEY_WRAP" if self is OaepHash.SHA1 else "RSA_AES_KEY_WRAP_256"

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA1() if self is OaepHash.SHA1 else hashes.SHA256()  # noqa: S303


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """What the HSM produced for one release; contains no plaintext."""

    ciphertext: bytes
    oaep_hash: OaepHash
    rsa_bits: int
    secret_length: int

    @property
    def algorithm(self) -> str:
        return self.oaep_hash.algorithm_name

    def __repr__(self) -> str:
        return (
            f"SealedSecret(algorithm={self.algorithm}, rsa_bits={self.rsa_bits}, "
            f"secret_length={self.secret_length}, ciphertext=<{len(self.ciphertext)} bytes>)"
        )


class EnvelopeError(ValueError):
    """The envelope does not open with this private key."""


def open_envelope(
    private_key: rsa.RSAPrivateKey, ciphertext: bytes, oaep_hash: OaepHash, secret_length: int
) -> bytes:
    """Guest side: recover the secret from an envelope with the ephemeral private key."""
    modulus_len = (private_key.key_size + 7) // 8
    if len(ciphertext) <= modulus_len:
        raise EnvelopeError("envelope shorter than its RSA block")
    algorithm = oaep_hash.hash()
    try:
        kek = private_key.decrypt(
            ciphertext[:modulus_len],
            padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None),
        )
    except ValueError:
        raise EnvelopeError("RSA-OAEP block does not decrypt with this key") from None
    try:
        padded = aes_key_unwrap_with_padding(kek, ciphertext[modulus_len:])
    except InvalidUnwrap:
        raise EnvelopeError("AES-KWP block fails its integrity check") from None
    if len(padded) < secret_length or any(padded[secret_length:]):
        raise EnvelopeError("unwrapped secret does not match the stated length")
    return padded[:secret_length]
