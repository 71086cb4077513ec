"""KMS ciphertext blobs (hsm/kmsblob.py): the documented layout, read back by an independent
AES-GCM (``cryptography``'s AESGCM) with the header and the encryption context as additional
data, and every malformed or altered blob refused with its exact error. The token's side
(the key as a SENSITIVE session object) is held by the integration tests on SoftHSM; here the
key object is AESGCM behind python-pkcs11's ``encrypt``/``decrypt`` signature."""

from __future__ import annotations

import os
from typing import Any

import pkcs11
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Mechanism

from hsm import kmsblob
from hsm.errors import CiphertextInvalid
from hsm.kmsblob import BlobHeader

SECRET = os.urandom(32)
CONTEXT = b'{"purpose":"db"}'
HEADER = BlobHeader("enclave-data-key", 3)


class AesGcmKey:
    """An AES key answering python-pkcs11's ``encrypt``/``decrypt`` for ``CKM_AES_GCM``."""

    def __init__(self, secret: bytes) -> None:
        self.aead = AESGCM(secret)

    def encrypt(self, data: bytes, *, mechanism: Mechanism, mechanism_param: Any) -> bytes:
        assert mechanism is Mechanism.AES_GCM
        assert mechanism_param.tag_bits == 128
        return self.aead.encrypt(mechanism_param.nonce, data, mechanism_param.aad)

    def decrypt(self, data: bytes, *, mechanism: Mechanism, mechanism_param: Any) -> bytes:
        assert mechanism is Mechanism.AES_GCM
        assert mechanism_param.tag_bits == 128
        try:
            return self.aead.decrypt(mechanism_param.nonce, data, mechanism_param.aad)
        except InvalidTag:
            raise pkcs11.exceptions.EncryptedDataInvalid from None


KEY = AesGcmKey(SECRET)
NOT_AUTHENTIC = "the ciphertext does not authenticate under its key with this encryption context"


def test_the_header_layout() -> None:
    assert BlobHeader("k", 7).to_bytes() == b"KBK\x01\x01k\x00\x00\x00\x07"
    assert HEADER.to_bytes() == b"KBK\x01\x10enclave-data-key\x00\x00\x00\x03"


@pytest.mark.parametrize("name", ["", "k" * 129])
def test_key_names_outside_1_to_128_bytes_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"key names are 1\.\.128 bytes"):
        BlobHeader(name, 1).to_bytes()


def test_a_blob_is_header_iv_ciphertext_tag_under_header_and_context() -> None:
    plaintext = b"the caller's secret"
    blob = kmsblob.encrypt(KEY, HEADER, plaintext, CONTEXT)
    header = HEADER.to_bytes()
    assert blob.startswith(header)
    assert len(blob) == len(header) + 12 + len(plaintext) + 16
    iv, sealed = blob[len(header) : len(header) + 12], blob[len(header) + 12 :]
    assert AESGCM(SECRET).decrypt(iv, sealed, header + CONTEXT) == plaintext
    parsed = kmsblob.parse(blob)
    assert (parsed.header, parsed.header_bytes, parsed.iv) == (HEADER, header, iv)
    assert kmsblob.decrypt(KEY, parsed, CONTEXT) == bytearray(plaintext)


def test_each_blob_has_its_own_iv() -> None:
    first, second = (kmsblob.encrypt(KEY, HEADER, b"same", CONTEXT) for _ in range(2))
    assert kmsblob.parse(first).iv != kmsblob.parse(second).iv


@pytest.mark.parametrize(
    "context", [b"{}", b'{"purpose":"dc"}', b'{"purpose":"db","x":"y"}'], ids=str
)
def test_another_context_fails_to_authenticate(context: bytes) -> None:
    blob = kmsblob.parse(kmsblob.encrypt(KEY, HEADER, b"bound", CONTEXT))
    with pytest.raises(CiphertextInvalid) as caught:
        kmsblob.decrypt(KEY, blob, context)
    assert str(caught.value) == NOT_AUTHENTIC


@pytest.mark.parametrize("offset", [4, 5, 21, 25, 40, -1])  # length, name, version, IV, ..., tag
def test_any_changed_byte_fails_to_authenticate(offset: int) -> None:
    blob = bytearray(kmsblob.encrypt(KEY, HEADER, b"bound to every byte", CONTEXT))
    blob[offset] ^= 0x01
    with pytest.raises(CiphertextInvalid):
        kmsblob.decrypt(KEY, kmsblob.parse(bytes(blob)), CONTEXT)


def test_another_key_fails_to_authenticate() -> None:
    blob = kmsblob.parse(kmsblob.encrypt(KEY, HEADER, b"x", CONTEXT))
    with pytest.raises(CiphertextInvalid) as caught:
        kmsblob.decrypt(AesGcmKey(os.urandom(32)), blob, CONTEXT)
    assert str(caught.value) == NOT_AUTHENTIC


def test_the_largest_blob_parses() -> None:
    header = BlobHeader("k" * kmsblob.MAX_NAME_BYTES, 1)
    blob = kmsblob.encrypt(KEY, header, bytes(kmsblob.MAX_PLAINTEXT_BYTES), b"{}")
    assert len(blob) == kmsblob.MAX_BLOB_BYTES
    assert kmsblob.parse(blob).header == header


VALID = HEADER.to_bytes() + bytes(12 + 16)
NOT_OURS = "the ciphertext blob is not a keybroker KMS ciphertext (v1)"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", NOT_OURS),
        (b"KBK", NOT_OURS),
        (b"KBK\x02" + VALID[4:], NOT_OURS),
        (b"AQIC" + VALID[4:], NOT_OURS),  # what an AWS KMS ciphertext begins with
        (VALID + bytes(kmsblob.MAX_BLOB_BYTES), NOT_OURS),
        (b"KBK\x01", "the ciphertext blob is truncated"),
        (VALID[:-1], "the ciphertext blob is truncated"),
        (b"KBK\x01\x00" + bytes(40), "the ciphertext blob is truncated"),
        (b"KBK\x01\x81" + bytes(200), "the ciphertext blob is truncated"),
        (b"KBK\x01\x01\xff" + bytes(32), "the ciphertext blob's key name is not ASCII"),
    ],
    ids=[
        "empty",
        "short-magic",
        "version-2",
        "aws",
        "too-large",
        "magic-only",
        "no-tag",
        "empty-name",
        "name-over-128",
        "non-ascii-name",
    ],
)
def test_a_malformed_blob_is_refused(blob: bytes, message: str) -> None:
    with pytest.raises(CiphertextInvalid) as caught:
        kmsblob.parse(blob)
    assert str(caught.value) == message
