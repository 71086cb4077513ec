"""The REPORT_DATA binding of SNP, TDX and SGX evidence: H(JCS({nonce, tee-pubkey}))."""

from __future__ import annotations

import hashlib

import pytest

from broker.errors import BindingMismatch
from broker.release.binding import check_report_data, expected_report_data

NONCE = "q" * 43 + "="
JWK = {"kty": "RSA", "e": "AQAB", "n": "xyz"}
DOCUMENT = b'{"nonce":"' + NONCE.encode() + b'","tee-pubkey":{"e":"AQAB","kty":"RSA","n":"xyz"}}'


def test_expected_report_data_hashes_the_canonical_document() -> None:
    assert expected_report_data(NONCE, JWK, "sha384") == (
        hashlib.sha384(DOCUMENT).digest() + bytes(16)
    )
    assert expected_report_data(NONCE, JWK, "sha512") == hashlib.sha512(DOCUMENT).digest()
    with pytest.raises(ValueError, match="sha256 not sha384/sha512"):
        expected_report_data(NONCE, JWK, "sha256")


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_either_hash_binds(algorithm: str) -> None:
    assert check_report_data(expected_report_data(NONCE, JWK, algorithm), NONCE, JWK) == algorithm


@pytest.mark.parametrize(
    ("report_data", "message"),
    [
        (None, "no 64-byte REPORT_DATA"),
        (bytes(48), "no 64-byte REPORT_DATA"),
        (hashlib.sha512(DOCUMENT + b" ").digest(), "neither SHA-384 nor SHA-512"),
        (hashlib.sha384(DOCUMENT).digest() + b"\x01" + bytes(15), "neither SHA-384 nor SHA-512"),
    ],
)
def test_anything_else_is_a_mismatch(report_data: bytes | None, message: str) -> None:
    with pytest.raises(BindingMismatch, match=message):
        check_report_data(report_data, NONCE, JWK)
    with pytest.raises(BindingMismatch):
        check_report_data(expected_report_data(NONCE, {**JWK, "n": "xyw"}, "sha384"), NONCE, JWK)
