"""The Recipient's AttestationDocument read as a Nitro document or as an evidence bundle
(docs/kms.md, "Evidence bundles"): what the guest writes, the broker reads back; every
malformed bundle is refused with its reason; a COSE_Sign1 document is never taken for one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from keybroker_guest.binding import binding_digest, report_data
from keybroker_guest.kms import FORMAT, binding_input, bundle
from keybroker_guest.teekey import rsa_jwk

from broker.api.kms.bundle import read
from broker.errors import BadRequest
from broker.evidence.claims import Tee
from broker.release.kms import EvidenceBundle

NITRO_VECTOR = (
    Path(__file__).resolve().parents[2]
    / "vectors"
    / "nitro"
    / "evervault-docs"
    / "valid-attestation-doc-2022-10-13.cose"
)
NONCE = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(scope="module")
def spki() -> bytes:
    return (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_what_the_guest_writes_the_broker_reads(spki: bytes) -> None:
    written = bundle("snp", b"report", spki, NONCE, {"vcek": b"der"})
    assert written.startswith(b"{")
    assert read(written) == EvidenceBundle(Tee.SNP, b"report", spki, NONCE, {"vcek": b"der"})
    without = read(bundle("az-snp-vtpm", b"quote", spki, NONCE))
    assert isinstance(without, EvidenceBundle)
    assert (without.tee, without.collateral) == (Tee.SNP_VTPM, {})


def test_a_nitro_document_is_passed_on_as_sent() -> None:
    document = NITRO_VECTOR.read_bytes()
    assert document[0] in (0x84, 0xD2)  # COSE_Sign1: a CBOR array, or tagged 18
    assert read(document) == document


def test_the_binding_is_the_native_one_of_the_keys_jwk(spki: bytes) -> None:
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, rsa.RSAPublicKey)
    jwk = rsa_jwk(key)
    assert set(jwk) == {"kty", "n", "e"}
    made = binding_input(NONCE, spki)
    assert made.report_data == report_data(NONCE, jwk)
    assert made.digest == binding_digest(NONCE, jwk)
    assert (made.nonce, made.public_key_der) == (bytes(range(32)), spki)


def _malformed(document: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        read(document)
    return caught.value.detail


def test_malformed_bundles_are_refused_with_their_reason(spki: bytes) -> None:
    good = json.loads(bundle("tdx", b"quote", spki, NONCE))
    assert good["format"] == FORMAT

    def variant(**members: object) -> bytes:
        return json.dumps({**good, **members}).encode()

    assert "not a JSON object" in _malformed(b"{not json")
    assert "not a JSON object" in _malformed(b"{}}")
    assert "names member 'tee' twice" in _malformed(b'{"tee": "snp", "tee": "tdx"}')
    assert "format is not keybroker-kms-evidence/1" in _malformed(variant(format="other"))
    assert "has no member extra" in _malformed(variant(extra=1))
    assert "tee 'z80' is not one of" in _malformed(variant(tee="z80"))
    assert "member 'tee' must be str" in _malformed(variant(tee=7))
    assert "member 'evidence' is not base64" in _malformed(variant(evidence="***"))
    assert "must not be empty" in _malformed(variant(public_key=""))
    assert "member 'nonce' is required" in _malformed(variant(nonce=None))
    assert "collateral 'vcek' must be base64 text" in _malformed(variant(collateral={"vcek": 1}))
    assert _malformed(variant(tee="z80")).startswith("Recipient.AttestationDocument: ")
