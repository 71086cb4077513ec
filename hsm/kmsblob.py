"""KMS ciphertext blobs: keybroker's own versioned, authenticated format.

``Encrypt`` and ``GenerateDataKey`` answer with a ``CiphertextBlob`` that only this broker's
token can open, and ``Decrypt`` reads it back. The blob names the key and the key version
that made it, so ``Decrypt`` needs no ``KeyId`` and a rotated key still opens old blobs:

====== ======= =====================================================================
offset size    field
====== ======= =====================================================================
0      4       magic ``KBK`` and format version ``0x01``
4      1       n: length of the key name (1..128)
5      n       key name (the broker's name syntax: ASCII)
5+n    4       key version, unsigned big-endian
9+n    12      IV (random)
21+n   rest    AES-256-GCM ciphertext of the plaintext, then its 16-byte tag
====== ======= =====================================================================

The GCM additional data is the header (bytes 0..9+n) followed by the canonical form of the
``EncryptionContext`` (RFC 8785 JSON of the string map; ``{}`` when none was given, as AWS
treats an absent context and an empty one alike). Changing the key name, the version or any
context pair makes the tag fail: ``Decrypt`` with another context is refused.

The key's 32-byte secret is unwrapped inside the token as a SENSITIVE, non-extractable AES
session object and used with ``CKM_AES_GCM`` through ``C_Encrypt``/``C_Decrypt``: the key itself
never leaves the token. The plaintext of the blob (the caller's data, or a data key) is what
passes through the broker, which the caller of this module names in its audit record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, Mechanism
from pkcs11.mechanisms import GCMParams

from hsm.errors import CiphertextInvalid

MAGIC = b"KBK\x01"
IV_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
MAX_NAME_BYTES = 128
#: AWS KMS limits on the plaintext of Encrypt and on data keys (KMS API reference).
MAX_PLAINTEXT_BYTES = 4096
MAX_DATA_KEY_BYTES = 1024
#: The largest blob this format makes: header, IV, the largest plaintext, tag.
MAX_BLOB_BYTES = len(MAGIC) + 1 + MAX_NAME_BYTES + 4 + IV_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES

#: The key's secret inside the token while it encrypts or decrypts: an AES session object that
#: never leaves it (SENSITIVE, not EXTRACTABLE), destroyed right after.
AES_OPERATION = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
}


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """What a blob says made it."""

    key_name: str
    key_version: int

    def to_bytes(self) -> bytes:
        name = self.key_name.encode("ascii")
        if not 1 <= len(name) <= MAX_NAME_BYTES:
            raise ValueError("key names are 1..128 bytes")
        return MAGIC + bytes([len(name)]) + name + self.key_version.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class ParsedBlob:
    header: BlobHeader
    header_bytes: bytes
    iv: bytes
    sealed: bytes
    """Ciphertext and tag."""


def parse(blob: bytes) -> ParsedBlob:
    """The parts of ``blob``; ``CiphertextInvalid`` unless it has this format's shape."""
    if len(blob) > MAX_BLOB_BYTES or blob[:4] != MAGIC:
        raise CiphertextInvalid("the ciphertext blob is not a keybroker KMS ciphertext (v1)")
    size = blob[4] if len(blob) > 4 else 0
    end = 5 + size + 4
    if not 1 <= size <= MAX_NAME_BYTES or len(blob) < end + IV_BYTES + TAG_BYTES:
        raise CiphertextInvalid("the ciphertext blob is truncated")
    try:
        name = blob[5 : 5 + size].decode("ascii")
    except UnicodeDecodeError:
        raise CiphertextInvalid("the ciphertext blob's key name is not ASCII") from None
    version = int.from_bytes(blob[5 + size : end], "big")
    return ParsedBlob(
        BlobHeader(name, version), blob[:end], blob[end : end + IV_BYTES], blob[end + IV_BYTES :]
    )


def encrypt(key: Any, header: BlobHeader, plaintext: bytes | bytearray, context: bytes) -> bytes:
    """A blob of ``plaintext`` under ``key`` (an :data:`AES_OPERATION` object), binding
    ``header`` and ``context`` (the canonical encryption context) as GCM additional data."""
    header_bytes = header.to_bytes()
    iv = os.urandom(IV_BYTES)
    sealed: bytes = key.encrypt(
        bytes(plaintext),
        mechanism=Mechanism.AES_GCM,
        mechanism_param=GCMParams(iv, header_bytes + context, TAG_BYTES * 8),
    )
    return header_bytes + iv + sealed


def decrypt(key: Any, blob: ParsedBlob, context: bytes) -> bytearray:
    """The plaintext of ``blob`` under ``key``; ``CiphertextInvalid`` when the tag fails
    (another key, version or context, or a changed byte)."""
    try:
        plaintext: bytes = key.decrypt(
            blob.sealed,
            mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(blob.iv, blob.header_bytes + context, TAG_BYTES * 8),
        )
    except (
        pkcs11.exceptions.EncryptedDataInvalid,
        pkcs11.exceptions.EncryptedDataLenRange,
        pkcs11.exceptions.GeneralError,
    ):
        raise CiphertextInvalid(
            "the ciphertext does not authenticate under its key with this encryption context"
        ) from None
    return bytearray(plaintext)
