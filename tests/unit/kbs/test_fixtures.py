"""Every kbs-types fixture in tests/vectors/kbs/fixtures, read by the test client as the
reference client reads it, with what kbs-types asserts of each (tests/vectors/kbs/MANIFEST.md),
and the server's JWE header writer held to the same AAD rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hsm.jwe import protected_header
from tests.kbs_client import wire

FIXTURES = Path(__file__).parents[2] / "vectors" / "kbs" / "fixtures"
FAKE_AAD = "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
NESTED_AAD = (
    "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImVwayI6eyJjcnYiOiJYMjU1MTkiLCJrdHkiOiJPS1AiLCJ4"
    "IjoiaFNEd0NZa3dwMVIwaTMzY3RENzNXZzJfT2cwbU9CcjA2NlNwanFxYlRtbyJ9fQ"
)


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def test_every_fixture_is_covered() -> None:
    found = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json")}
    assert found == COVERED


def test_parse_request() -> None:
    request = wire.parse_request(_load("parse_request.json"))
    assert request == wire.Request(version="0.0.0", tee="tdx", extra_params="")


def test_parse_request_v0_12_names_a_tee_that_is_gone() -> None:
    with pytest.raises(wire.WireError, match="unknown variant `sev`"):
        wire.parse_request(_load("kbs-types-v0.12.0/parse_request.json"))


def test_parse_challenge() -> None:
    challenge = wire.parse_challenge(_load("parse_challenge.json"))
    assert challenge == wire.Challenge(nonce="42", extra_params="")
    assert challenge.selected_hash() == "sha384"  # extra-params not an object: the default


def test_protected_header_generate_aad() -> None:
    fixture = _load("protected_header_generate_aad.json")
    header = fixture["protected_header"]
    assert wire.ProtectedHeader(header["alg"], header["enc"]).generate_aad() == fixture["aad"]
    assert protected_header(header["alg"], header["enc"]) == fixture["aad"]


@pytest.mark.parametrize(
    ("name", "others", "aad", "raw_aad"),
    [
        ("parse_response.json", {}, FAKE_AAD, None),
        (
            "parse_response_with_protectedheader.json",
            {"fakefield": "fakevalue"},
            "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyIsImZha2VmaWVsZCI6ImZha2V2YWx1ZSJ9",
            b"fakeaad",
        ),
        ("parse_response_with_aad.json", {}, FAKE_AAD, b"fakeaad"),
        (
            "parse_response_nested_protected_header.json",
            {
                "epk": {
                    "kty": "OKP",
                    "crv": "X25519",
                    "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo",
                }
            },
            NESTED_AAD,
            None,
        ),
    ],
)
def test_parse_response(name: str, others: dict[str, Any], aad: str, raw_aad: bytes | None) -> None:
    document = _load(name)
    response = wire.parse_response(document)
    assert (response.protected.alg, response.protected.enc) == ("fakealg", "fakeenc")
    assert response.protected.other_fields == others
    assert response.encrypted_key == b"fakekey"
    assert response.iv == b"randomdata"
    assert response.ciphertext == b"fakeencoutput"
    assert response.tag == b"faketag"
    assert response.aad == raw_aad
    assert response.protected.generate_aad() == aad
    # The server writes headers in exactly the regenerated form.
    assert protected_header("fakealg", "fakeenc", others) == aad
    if name in ("parse_response_with_aad.json", "parse_response_nested_protected_header.json"):
        assert document["protected"] != aad  # received with a trailing newline: never the AAD


def test_serialize_response() -> None:
    value = _load("serialize_response.input.json")
    expected = _load("serialize_response.expected.json")
    header = value["protected"]
    others = {k: v for k, v in header.items() if k not in ("alg", "enc")}
    serialised = {
        "protected": protected_header(header["alg"], header["enc"], others),
        "encrypted_key": wire.b64url(value["encrypted_key"].encode()),
        "iv": wire.b64url(value["iv"].encode()),
        "aad": value["aad"],
        "ciphertext": wire.b64url(value["ciphertext"].encode()),
        "tag": wire.b64url(value["tag"].encode()),
    }
    assert serialised == expected
    assert list(serialised) == list(expected)


@pytest.mark.parametrize(
    ("name", "pubkey"),
    [
        (
            "parse_attestation_ec.json",
            {"kty": "EC", "crv": "fakecrv", "alg": "fakealgorithm", "x": "fakex", "y": "fakey"},
        ),
        (
            "parse_attestation_rsa.json",
            {"kty": "RSA", "alg": "fakealgorithm", "n": "fakemodulus", "e": "fakeexponent"},
        ),
        (
            "parse_attestation_akp.json",
            {"kty": "AKP", "alg": "fakealgorithm", "pub": "fakepublickey"},
        ),
    ],
)
def test_parse_attestation(name: str, pubkey: dict[str, str]) -> None:
    attestation = wire.parse_attestation(_load(name))
    assert attestation.nonce == "test_nonce"
    assert attestation.tee_pubkey == pubkey
    assert attestation.init_data is None
    assert attestation.primary_evidence == "test_primary_evidence"
    assert attestation.additional_evidence == "test_additional_evidence"


@pytest.mark.parametrize(
    "name",
    ["kbs-types-v0.12.0/parse_attestation_ec.json", "kbs-types-v0.12.0/parse_attestation_rsa.json"],
)
def test_pre_0_4_attestations_do_not_parse(name: str) -> None:
    with pytest.raises(wire.WireError, match="field `tee-evidence` has the wrong type"):
        wire.parse_attestation(_load(name))


def test_parse_error_information() -> None:
    error = wire.parse_error_information(_load("parse_error_information.json"))
    assert error == wire.ErrorInformation(type="problemtype", detail="problemdetail")
    assert error.variant is None


def test_legacy_sev_testdata() -> None:
    request = _load("testdata/sev_request.json")
    assert request["tee"] == "sev"
    with pytest.raises(wire.WireError, match="unknown variant `sev`"):
        wire.parse_request(request)
    challenge = wire.parse_challenge(_load("testdata/sev_challenge.json"))
    assert challenge.nonce == "42"
    assert challenge.selected_hash() == "sha384"  # an object without the member: the default


COVERED = {
    "parse_request.json",
    "parse_challenge.json",
    "protected_header_generate_aad.json",
    "parse_response.json",
    "parse_response_nested_protected_header.json",
    "parse_response_with_aad.json",
    "parse_response_with_protectedheader.json",
    "serialize_response.input.json",
    "serialize_response.expected.json",
    "parse_attestation_ec.json",
    "parse_attestation_rsa.json",
    "parse_attestation_akp.json",
    "parse_error_information.json",
    "kbs-types-v0.12.0/parse_request.json",
    "kbs-types-v0.12.0/parse_attestation_ec.json",
    "kbs-types-v0.12.0/parse_attestation_rsa.json",
    "testdata/sev_request.json",
    "testdata/sev_challenge.json",
}
