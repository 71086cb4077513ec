"""``CiphertextForRecipient``: a CMS EnvelopedData only the attested enclave can open.

AWS KMS answers a request that carries a ``Recipient`` (a Nitro attestation document whose
``public_key`` is the enclave's RSA key) with the data key encrypted to that key as a CMS
EnvelopedData (RFC 5652 §6), shaped as the Nitro Enclaves SDK's parser
(``aws_cms_parse_enveloped_data``) reads it, and as ``openssl cms -decrypt`` does:

* ContentInfo { id-envelopedData, [0] EXPLICIT EnvelopedData };
* EnvelopedData version 2 (RFC 5652 §6.1: a recipient identified by subjectKeyIdentifier),
  no originatorInfo, no unprotectedAttrs;
* exactly one KeyTransRecipientInfo version 2 whose rid is ``[0]`` subjectKeyIdentifier (the
  SHA-1 of the recipient key's subjectPublicKey, RFC 5280 §4.2.1.2 method 1; the SDK ignores
  the value), keyEncryptionAlgorithm id-RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055
  §3.1; pSourceFunc absent: the empty label), and the encrypted content-encryption key;
* EncryptedContentInfo { id-data, aes256-CBC with the 16-byte IV as its parameter (RFC 3565
  §4.1), ``[0] IMPLICIT`` encryptedContent }, the content padded as RFC 5652 §6.3 says.

Where the plaintext is while this is made (the exposure every audit record names): a PKCS#11
token could build it only with ``C_WrapKey`` under OAEP with SHA-256 for the content key and
``C_WrapKey`` with ``CKM_AES_CBC_PAD`` for the content, after unwrapping the data key from
its ciphertext blob with ``CKM_AES_GCM``; SoftHSM 2.6.1 does OAEP with SHA-1 only and wraps
with neither CBC_PAD nor GCM (docs/architecture.md §4). So :func:`seal` encrypts in software:
the data key is in broker memory while the envelope is built, which a key allows only with
exposure ``broker-memory``; the audit record says ``plaintext_in_broker: true``. Nothing here
logs, and no value here has a ``repr`` that shows key material.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ENVELOPE = "cms"
KEY_ENCRYPTION = "RSAES_OAEP_SHA_256"
CONTENT_ENCRYPTION = "AES-256-CBC"
CEK_BYTES = 32
IV_BYTES = 16

# Object identifiers, as DER contents octets.
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"  # RFC 5652 §6.1
ID_DATA = "1.2.840.113549.1.7.1"  # RFC 5652 §4
ID_RSAES_OAEP = "1.2.840.113549.1.1.7"  # RFC 4055 §3.1
ID_MGF1 = "1.2.840.113549.1.1.8"  # RFC 4055 §3.1
ID_SHA256 = "2.16.840.1.101.3.4.2.1"  # RFC 5754 §2.2
ID_AES256_CBC = "2.16.840.1.101.3.4.1.42"  # RFC 3565 §4.1

_OAEP_SHA256 = asymmetric.OAEP(
    mgf=asymmetric.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


# --- DER (X.690 §10), only what these structures need ---------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, contents: bytes) -> bytes:
    return bytes([tag]) + _length(len(contents)) + contents


def sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))  # DER: SET OF elements in ascending order


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative integers are written here")
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octet_string(value: bytes) -> bytes:
    return _tlv(0x04, value)


def null() -> bytes:
    return b"\x05\x00"


def oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def context(number: int, contents: bytes, *, constructed: bool) -> bytes:
    return _tlv((0xA0 if constructed else 0x80) | number, contents)


def algorithm(identifier: str, parameters: bytes | None = None) -> bytes:
    return sequence(oid(identifier), *(() if parameters is None else (parameters,)))


# --- the envelope ------------------------------------------------------------------------------


def subject_key_identifier(key: rsa.RSAPublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING's value (the
    RSAPublicKey DER)."""
    pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha1(pkcs1, usedforsecurity=False).digest()


def oaep_sha256_identifier() -> bytes:
    """id-RSAES-OAEP with RSAES-OAEP-params {hashFunc sha256, maskGenFunc mgf1(sha256)}
    (RFC 4055 §4.1; pSourceFunc left at its default, the empty label)."""
    sha256 = algorithm(ID_SHA256, null())
    parameters = sequence(
        context(0, sha256, constructed=True),
        context(1, algorithm(ID_MGF1, sha256), constructed=True),
    )
    return algorithm(ID_RSAES_OAEP, parameters)


@dataclass(frozen=True, slots=True)
class CmsEnvelope:
    """One ``CiphertextForRecipient``, and where the plaintext was while it was made."""

    der: bytes
    plaintext_in_broker: bool

    def exposure(self) -> dict[str, Any]:
        """What the audit record of this answer says about the envelope."""
        return {
            "plaintext_in_broker": self.plaintext_in_broker,
            "envelope": {
                "format": ENVELOPE,
                "key_encryption": KEY_ENCRYPTION,
                "content_encryption": CONTENT_ENCRYPTION,
            },
        }

    def __repr__(self) -> str:
        return (
            f"CmsEnvelope(<{len(self.der)} bytes>, plaintext_in_broker={self.plaintext_in_broker})"
        )


def seal(plaintext: bytes | bytearray, to: rsa.RSAPublicKey) -> CmsEnvelope:
    """Encrypt ``plaintext`` to ``to`` in software (the broker-memory path). The content key
    lives in a ``bytearray`` overwritten before returning; the caller owns ``plaintext``."""
    cek = bytearray(os.urandom(CEK_BYTES))
    try:
        encrypted_key = to.encrypt(bytes(cek), _OAEP_SHA256)
        iv = os.urandom(IV_BYTES)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(bytes(plaintext)) + padder.finalize()
        encryptor = Cipher(algorithms.AES(bytes(cek)), modes.CBC(iv)).encryptor()
        content = encryptor.update(padded) + encryptor.finalize()
    finally:
        cek[:] = bytes(len(cek))
    recipient = sequence(
        integer(2),
        context(0, subject_key_identifier(to), constructed=False),
        oaep_sha256_identifier(),
        octet_string(encrypted_key),
    )
    encrypted_content_info = sequence(
        oid(ID_DATA),
        algorithm(ID_AES256_CBC, octet_string(iv)),
        context(0, content, constructed=False),
    )
    enveloped = sequence(integer(2), set_of(recipient), encrypted_content_info)
    der = sequence(oid(ID_ENVELOPED_DATA), context(0, enveloped, constructed=True))
    return CmsEnvelope(der=der, plaintext_in_broker=True)
