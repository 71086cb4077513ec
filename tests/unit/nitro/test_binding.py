"""The release-flow binding of a Nitro document: nonce = challenge, public_key = tee key."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import BindingMismatch, PublicKeyInvalid
from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.nitro.binding import check_binding
from broker.evidence.nitro.verify import verify
from broker.simulate.nitro import FakeNitroAuthority
from tests.unit.nitro.vectors import DEBUG, GA, PRODUCTION_PCRS, SYNTHETIC_AT

CHALLENGE = bytes(range(100, 132))
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(*_SPKI)
    return der


TEE_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
TEE_SPKI = _spki(TEE_KEY)


def _claims(**fields: Any) -> Claims:
    base = {"nonce": CHALLENGE.hex(), "public_key": TEE_SPKI.hex(), "user_data": None}
    return Claims(
        tee=Tee.NITRO,
        signer=Signer(
            "aws", SignerOrigin.INFRASTRUCTURE_PROVIDER, "aws-nitro-enclaves-root-g1", "nitro"
        ),
        debug=False,
        fields=base | fields,
    )


def _compressed_spki(key: ec.EllipticCurvePublicKey) -> bytes:
    """The same P-256 key as an SPKI whose point is compressed (SEC 1 §2.3.3)."""
    uncompressed = _spki(key)
    algorithm = uncompressed[2:23]  # SEQUENCE { ecPublicKey, prime256v1 }, 21 bytes
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    bit_string = b"\x03" + bytes([len(point) + 1]) + b"\x00" + point
    body = algorithm + bit_string
    return b"\x30" + bytes([len(body)]) + body


def test_synthetic_document_binds_its_challenge_and_key(authority: FakeNitroAuthority) -> None:
    data = authority.sign_document(
        pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT, nonce=CHALLENGE, public_key=TEE_SPKI
    )
    claims = verify(data, {}, now=SYNTHETIC_AT, extra_roots=[authority.trusted_root()])
    check_binding(claims, CHALLENGE, TEE_SPKI)


def test_equivalent_encodings_of_one_key_match() -> None:
    compressed = _compressed_spki(TEE_KEY)
    assert compressed != TEE_SPKI
    check_binding(_claims(public_key=compressed.hex()), CHALLENGE, TEE_SPKI)
    check_binding(_claims(), CHALLENGE, compressed)


def test_rsa_tee_key() -> None:
    spki = _spki(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    check_binding(_claims(public_key=spki.hex()), CHALLENGE, spki)


def _mismatch(claims: Claims, match: str, nonce: bytes = CHALLENGE, key: bytes = TEE_SPKI) -> None:
    with pytest.raises(BindingMismatch, match=match) as info:
        check_binding(claims, nonce, key)
    assert info.value.type == "binding-mismatch"


def test_other_nonce() -> None:
    _mismatch(_claims(nonce=bytes(32).hex()), r"document nonce 0000.* != challenge nonce 6465")


def test_nonce_prefix_is_not_enough() -> None:
    _mismatch(_claims(nonce=CHALLENGE[:16].hex()), "!= challenge nonce")


def test_absent_nonce() -> None:
    _mismatch(_claims(nonce=None), "document nonce is absent")


def test_absent_public_key() -> None:
    _mismatch(_claims(public_key=None), "document public_key is absent")


def test_public_key_that_is_not_spki() -> None:
    raw = b"my super secret key"
    _mismatch(_claims(public_key=raw.hex()), r"public_key \(19 bytes, .*\) is not a DER")


def test_other_public_key() -> None:
    other = _spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    _mismatch(_claims(public_key=other.hex()), "is not the tee public key")


def test_key_in_user_data_does_not_count() -> None:
    _mismatch(_claims(public_key=None, user_data=TEE_SPKI.hex()), "public_key is absent")


def test_claims_of_another_tee() -> None:
    claims = Claims(
        tee=Tee.SNP,
        signer=Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek", "Milan"),
        debug=False,
        fields={"nonce": CHALLENGE.hex()},
    )
    _mismatch(claims, "apply to tee nitro, not snp")


def test_unparseable_tee_key_is_the_callers_error() -> None:
    with pytest.raises(PublicKeyInvalid, match="not a DER SubjectPublicKeyInfo"):
        check_binding(_claims(), CHALLENGE, b"\x30\x00")


def test_real_documents_do_not_bind_a_tee_key() -> None:
    debug = verify(DEBUG.data, {}, now=DEBUG.at)
    _mismatch(debug, "document nonce is absent")
    ga = verify(GA.data, {}, now=GA.at)
    ga_nonce = bytes.fromhex(ga.lookup("nonce"))
    _mismatch(ga, "document public_key is absent", nonce=ga_nonce)
    _mismatch(ga, "!= challenge nonce")
