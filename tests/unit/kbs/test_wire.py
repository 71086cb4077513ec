"""The KBS adapter's parsers (``broker/api/kbs/wire.py``) on the kbs-types fixtures and on
everything else a client could send."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from broker.api.kbs import wire
from broker.errors import BadRequest, MalformedEvidence, PublicKeyInvalid, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.release.origin import Origin
from broker.release.service import kbs_attest_request
from tests.kbs_client.client import TeeKeyPair

FIXTURES = Path(__file__).parents[2] / "vectors" / "kbs" / "fixtures"


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


@pytest.mark.parametrize("version", ["0.4.0", "0.4.0+build", "0.4.0+a.b-c.1"])
def test_version_accepted(version: str) -> None:
    wire.check_version(version)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("0.0.0", "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.0.0"),
        ("0.4.1", "Version Mismatch"),
        ("1.4.0", "Version Mismatch"),
        ("0.4.0-rc.1", "Version Mismatch"),
        ("0.04.0", "is not a semantic version"),
        ("v0.4.0", "is not a semantic version"),
        ("0.4", "is not a semantic version"),
        ("0.4.0 ", "is not a semantic version"),
        ("0.4.0\n", "is not a semantic version"),
        ("\uff10.4.0", "is not a semantic version"),  # a full-width digit zero
        ("", "is not a semantic version"),
    ],
)
def test_version_refused(version: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        wire.check_version(version)


def test_the_fixture_requests_are_refused_for_their_version() -> None:
    with pytest.raises(BadRequest, match=r"Version Mismatch.*0\.0\.0"):
        wire.parse_auth(_load("parse_request.json"))
    with pytest.raises(BadRequest, match="Version Mismatch"):
        wire.parse_auth(_load("kbs-types-v0.12.0/parse_request.json"))
    legacy = _load("testdata/sev_request.json")
    with pytest.raises(BadRequest):
        wire.parse_auth(legacy)


def test_a_request_as_the_reference_client_sends_it() -> None:
    request = {
        "version": "0.4.0",
        "tee": "snp",
        "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]},
    }
    assert wire.parse_auth(request) == wire.AuthRequest(Tee.SNP, "sha384")
    assert wire.parse_auth({"version": "0.4.0", "tee": "tdx"}) == wire.AuthRequest(
        Tee.TDX, "sha384"
    )


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        ({"version": "0.4.0", "tee": "sev"}, BadRequest, "tee 'sev' is not a KBS TEE name"),
        ({"version": "0.4.0", "tee": "nitro"}, BadRequest, "tee 'nitro' is not a KBS TEE name"),
        ({"version": "0.4.0", "tee": "se"}, UnsupportedEvidence, r"tee se is not verified"),
        ({"version": "0.4.0", "tee": 5}, BadRequest, "Request.tee must be a string"),
        ({"tee": "snp"}, BadRequest, "Request lacks version"),
        ({"version": "0.4.0", "tee": "snp", "x": 1}, BadRequest, "unknown members x"),
    ],
)
def test_auth_refusals(request_: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        wire.parse_auth(request_)


@pytest.mark.parametrize(
    ("extra", "selected"),
    [
        ("", "sha384"),
        ({}, "sha384"),
        ({"supported-hash-algorithms": "sha512"}, "sha384"),
        ({"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]}, "sha384"),
        ({"supported-hash-algorithms": ["SHA512", "sha256"]}, "sha512"),
        ({"supported-hash-algorithms": ["sha256", 5]}, "sha256"),
    ],
)
def test_hash_selection(extra: Any, selected: str) -> None:
    assert wire.select_hash(extra) == selected


def test_no_hash_in_common() -> None:
    with pytest.raises(
        BadRequest, match="offers none; keybroker binds with sha384, sha512, sha256"
    ):
        wire.select_hash({"supported-hash-algorithms": []})


def test_challenge_names_the_selected_hash() -> None:
    assert wire.challenge("bm9uY2U=", "sha512") == {
        "nonce": "bm9uY2U=",
        "extra-params": {"selected-hash-algorithm": "sha512"},
    }


# --- attestations ------------------------------------------------------------------------------


def test_the_fixture_attestations_parse_up_to_their_fake_keys() -> None:
    for name, message in (
        ("parse_attestation_ec.json", "EC tee-pubkey alg 'fakealgorithm' is not ECDH-ES"),
        ("parse_attestation_rsa.json", "RSA tee-pubkey alg 'fakealgorithm' is not RSA-OAEP-256"),
        ("parse_attestation_akp.json", "kty 'AKP' is not EC or RSA"),
    ):
        with pytest.raises(PublicKeyInvalid, match=message):
            _attest_request(_load(name), Tee.SNP, "test_nonce", "sha384")


@pytest.mark.parametrize(
    "name",
    ["kbs-types-v0.12.0/parse_attestation_ec.json", "kbs-types-v0.12.0/parse_attestation_rsa.json"],
)
def test_pre_0_4_attestations_are_refused(name: str) -> None:
    with pytest.raises(BadRequest, match="runtime-data lacks nonce"):
        _attest_request(_load(name), Tee.SNP, "test_nonce", "sha384")


def _attest_request(document: dict[str, Any], tee: Tee, nonce: str, hash_name: str) -> Any:
    """The attestation as the KBS endpoint reads it: the wire, then the release service's
    request (the tee key first, then the evidence)."""
    parsed = wire.parse_attestation(document, tee, nonce, hash_name)
    return kbs_attest_request(
        tee=tee,
        tee_pubkey=parsed.tee_pubkey,
        primary_evidence=parsed.primary_evidence,
        nonce_text=nonce,
        origin=Origin(request_id=None),
        rcar=parsed.rcar,
    )


def _attestation(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "init-data": None,
        "runtime-data": {"nonce": "n", "tee-pubkey": TeeKeyPair.generate().public},
        "tee-evidence": {"primary_evidence": {"quote": "cQ=="}, "additional_evidence": ""},
    }
    body.update(changes)
    return body


def test_an_attestation_as_the_reference_client_sends_it() -> None:
    parsed = _attest_request(_attestation(), Tee.SGX, "n", "sha512")
    assert parsed.evidence == b"q"
    assert parsed.rcar.hash_name == "sha512"
    assert parsed.rcar.additional_evidence == ""
    assert parsed.rcar.init_data is None
    assert parsed.tee_key.alg == "ECDH-ES+A256KW"
    without_init = _attestation()
    del without_init["init-data"]
    assert _attest_request(without_init, Tee.SGX, "n", "sha384").rcar.init_data is None


def test_init_data_digest() -> None:
    body = 'algorithm = "sha256"\nversion = "0.1.0"\n'
    parsed = _attest_request(
        _attestation(**{"init-data": {"format": "toml", "body": body}}), Tee.SGX, "n", "sha384"
    )
    assert parsed.rcar.init_data is not None
    assert parsed.rcar.init_data.algorithm == "sha256"
    assert parsed.rcar.init_data.digest == hashlib.sha256(body.encode()).digest()


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"runtime-data": {"nonce": "m", "tee-pubkey": {}}}, BadRequest, "not this session's"),
        ({"runtime-data": {"nonce": "n"}}, BadRequest, "runtime-data lacks tee-pubkey"),
        ({"tee-evidence": "evidence"}, BadRequest, "tee-evidence must be a JSON object"),
        (
            {"tee-evidence": {"primary_evidence": {"quote": "cQ=="}, "additional_evidence": 5}},
            BadRequest,
            "tee-evidence.additional_evidence must be a string",
        ),
        (
            {"tee-evidence": {"primary_evidence": {"quote": "x"}, "additional_evidence": ""}},
            MalformedEvidence,
            "quote is not standard base64",
        ),
        (
            {"init-data": {"format": "json", "body": "{}"}},
            BadRequest,
            "init-data format 'json' is not toml",
        ),
        (
            {"init-data": {"format": "toml", "body": "algorithm ="}},
            BadRequest,
            "init-data body is not TOML",
        ),
        (
            {"init-data": {"format": "toml", "body": 'algorithm = "md5"'}},
            BadRequest,
            "sha256, sha384 or sha512",
        ),
        ({"init-data": {"format": "toml"}}, BadRequest, "init-data lacks body"),
        ({"extra": 1}, BadRequest, "Attestation has unknown members extra"),
    ],
)
def test_attestation_refusals(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _attest_request(_attestation(**changes), Tee.SGX, "n", "sha384")
