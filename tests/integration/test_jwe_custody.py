"""The KBS JWE through a real SoftHSM token: what the module can do of it inside (nothing, on
SoftHSM 2.6.1: the probe says what is missing), and the broker-memory path, which leaves no
object behind and opens the reference client's way."""

from __future__ import annotations

import json
import os

import pytest

from hsm.custody import Custody, WrappedSecret
from hsm.errors import BlobInvalid
from hsm.jwe import ECDH_ES_A256KW, RSA_OAEP_256, InTokenSupport, recipient
from tests.kbs_client.client import TeeKeyPair, open_jwe

pytestmark = pytest.mark.integration


def test_softhsm_cannot_make_a_jwe_inside_the_token(custody: Custody) -> None:
    """SoftHSM encrypts data with AES-GCM but cannot wrap a key with it, and its OAEP is
    SHA-1 only (docs/architecture.md §4): the probe finds both missing."""
    assert custody.jwe_support == InTokenSupport(gcm_wrap=False, oaep_sha256_wrap=False)
    assert custody.jwe_support.missing(RSA_OAEP_256) == [
        "C_WrapKey with CKM_AES_GCM (A256GCM content)",
        "C_WrapKey with CKM_RSA_PKCS_OAEP and SHA-256 (RSA-OAEP-256)",
    ]
    assert custody.jwe_support.missing(ECDH_ES_A256KW) == [
        "C_WrapKey with CKM_AES_GCM (A256GCM content)",
        "an ECDH key derivation computing JOSE's Concat KDF (none in PKCS#11)",
    ]
    assert custody.count_session_objects() == 0  # the probe's keys are gone


@pytest.mark.parametrize("length", [32, 33, 1])
def test_the_broker_memory_path_opens_and_leaves_nothing(custody: Custody, length: int) -> None:
    secret = os.urandom(length)  # 33 and 1: SoftHSM pads them for KWP; the JWE must not
    wrapped = custody.import_secret(secret)
    key = TeeKeyPair.generate()
    envelope = custody.pool.run_sync(
        lambda session: custody.release_jwe_sync(wrapped, recipient(key.public), session)
    )
    assert envelope.plaintext_in_broker is True
    assert open_jwe(json.dumps(envelope.to_json()).encode(), key.private) == secret
    assert custody.count_session_objects() == 0


def test_a_tampered_blob_is_refused_and_leaves_nothing(custody: Custody) -> None:
    wrapped = custody.import_secret(os.urandom(32))
    tampered = WrappedSecret(
        wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]), wrapped.secret_length, wrapped.kek_label
    )
    to = recipient(TeeKeyPair.generate().public)
    with pytest.raises(BlobInvalid):
        custody.pool.run_sync(lambda session: custody.release_jwe_sync(tampered, to, session))
    longer = WrappedSecret(wrapped.blob, 40, wrapped.kek_label)  # more than the blob holds
    with pytest.raises(BlobInvalid, match="does not match its recorded length"):
        custody.pool.run_sync(lambda session: custody.release_jwe_sync(longer, to, session))
    assert custody.count_session_objects() == 0
