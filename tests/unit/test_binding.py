"""The REPORT_DATA binding of SNP, TDX and SGX evidence: H(JCS({nonce, tee-pubkey})), and
Trustee's KBS binding with additional-evidence and init-data."""

from __future__ import annotations

import hashlib

import pytest

from broker.errors import BindingMismatch
from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.jcs import canonicalize
from broker.release.binding import (
    InitData,
    RcarBinding,
    check_report_data,
    expected_report_data,
)

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


# --- Trustee's KBS binding (RCAR) ------------------------------------------------------------


def _claims(tee: Tee, report_data: bytes | None, **fields: str) -> Claims:
    signer = Signer("intel", SignerOrigin.SILICON_VENDOR, "insecure-test-x", "kit")
    return Claims(tee, signer, False, fields, report_data=report_data)


KBS_JWK = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "eA", "y": "eQ"}


def test_trustees_known_answer_of_its_structured_runtime_data() -> None:
    """trustee attestation-service/src/lib.rs: sha384 of JCS of {"b":1,"a":"test","c":{"d":"e"}}."""
    digest = hashlib.sha384(canonicalize({"b": 1, "a": "test", "c": {"d": "e"}})).hexdigest()
    assert digest == (
        "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
        "4597480a186427c813ca941da78870c3"
    )


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_rcar_binds_additional_evidence_under_the_selected_hash(hash_name: str) -> None:
    document = canonicalize({"additional-evidence": "", "nonce": NONCE, "tee-pubkey": KBS_JWK})
    digest = getattr(hashlib, hash_name)(document).digest()
    claims = _claims(Tee.TDX, digest + bytes(64 - len(digest)))
    assert RcarBinding(hash_name, "").check(claims, NONCE, KBS_JWK) == {
        "rule": "kbs-rcar",
        "hash": hash_name,
    }
    with pytest.raises(BindingMismatch, match=f"REPORT_DATA is not {hash_name} of JCS"):
        RcarBinding(hash_name, "x").check(claims, NONCE, KBS_JWK)  # other additional evidence
    native = expected_report_data(NONCE, KBS_JWK, "sha384")
    with pytest.raises(BindingMismatch):
        RcarBinding("sha384", "").check(_claims(Tee.TDX, native), NONCE, KBS_JWK)


@pytest.mark.parametrize(
    ("tee", "field", "size"),
    [(Tee.SNP, "host_data", 32), (Tee.TDX, "mr_config_id", 48), (Tee.SGX, "config_id", 64)],
)
def test_init_data_digest_is_padded_or_cut_to_the_field(tee: Tee, field: str, size: int) -> None:
    init = InitData.of("toml", 'algorithm = "sha384"\n')
    document = canonicalize({"additional-evidence": "", "nonce": NONCE, "tee-pubkey": KBS_JWK})
    report_data = hashlib.sha384(document).digest() + bytes(16)
    wanted = (init.digest + bytes(size))[:size]
    claims = _claims(tee, report_data, **{field: wanted.hex()})
    summary = RcarBinding("sha384", "", init).check(claims, NONCE, KBS_JWK)
    assert summary["init_data"] == {
        "algorithm": "sha384",
        "digest": init.digest.hex(),
        "field": field,
    }
    other = _claims(tee, report_data, **{field: bytes(size).hex()})
    with pytest.raises(BindingMismatch, match=f"{field.upper()} 0000000000000000..."):
        RcarBinding("sha384", "", init).check(other, NONCE, KBS_JWK)


def test_nitro_carries_no_init_data() -> None:
    init = InitData.of("toml", 'algorithm = "sha256"\n')
    document = canonicalize({"additional-evidence": "", "nonce": NONCE, "tee-pubkey": KBS_JWK})
    claims = _claims(Tee.NITRO, hashlib.sha384(document).digest() + bytes(16))
    with pytest.raises(BindingMismatch, match="tee nitro carries no init-data digest"):
        RcarBinding("sha384", "", init).check(claims, NONCE, KBS_JWK)


# --- Trustee's KBS binding behind a vTPM: the quote's extraData and PCR8 ----------------------


def _vtpm_claims(extra_data: bytes, pcr8: bytes = bytes(32)) -> Claims:
    tpm = {"extra_data": extra_data.hex(), "pcrs": {"sha256": {"8": pcr8.hex()}}}
    return _claims(Tee.SNP_VTPM, bytes(64), tpm=tpm)  # type: ignore[arg-type]


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_rcar_binds_a_vtpm_through_the_quotes_extra_data_unpadded(hash_name: str) -> None:
    document = canonicalize({"additional-evidence": "", "nonce": NONCE, "tee-pubkey": KBS_JWK})
    digest = getattr(hashlib, hash_name)(document).digest()
    assert RcarBinding(hash_name, "").check(_vtpm_claims(digest), NONCE, KBS_JWK) == {
        "rule": "kbs-rcar",
        "hash": hash_name,
        "field": "tpm.extra_data",
    }
    wanted = f"TPM quote extraData is not {hash_name} of JCS\\(\\{{additional-evidence, nonce"
    padded = digest + bytes(64 - len(digest))
    for found in (padded, hashlib.sha384(b"another challenge").digest()):
        if found == digest:
            continue
        with pytest.raises(BindingMismatch, match=wanted) as caught:
            RcarBinding(hash_name, "").check(_vtpm_claims(found), NONCE, KBS_JWK)
        assert caught.value.detail.endswith(f"(found {len(found)} bytes {found[:8].hex()}...)")
    # the hardware report's REPORT_DATA does not bind a vTPM guest, however it reads
    report_data_bound = _claims(Tee.SNP_VTPM, padded, tpm={"extra_data": ""})  # type: ignore[arg-type]
    with pytest.raises(BindingMismatch, match="found 0 bytes"):
        RcarBinding(hash_name, "").check(report_data_bound, NONCE, KBS_JWK)


def test_vtpm_init_data_is_pcr8_extended_once() -> None:
    init = InitData.of("toml", 'algorithm = "sha256"\n')
    document = canonicalize({"additional-evidence": "", "nonce": NONCE, "tee-pubkey": KBS_JWK})
    digest = hashlib.sha384(document).digest()
    pcr8 = hashlib.sha256(bytes(32) + init.digest).digest()
    summary = RcarBinding("sha384", "", init).check(_vtpm_claims(digest, pcr8), NONCE, KBS_JWK)
    assert summary["init_data"] == {
        "algorithm": "sha256",
        "digest": init.digest.hex(),
        "field": "tpm.pcrs.sha256.8",
    }
    with pytest.raises(BindingMismatch, match=f"sha256 PCR8 {bytes(8).hex()}... is not the"):
        RcarBinding("sha384", "", init).check(_vtpm_claims(digest), NONCE, KBS_JWK)
    sha384 = InitData.of("toml", 'algorithm = "sha384"\n')
    with pytest.raises(BindingMismatch, match="init-data algorithm sha384: a vTPM guest"):
        RcarBinding("sha384", "", sha384).check(_vtpm_claims(digest, pcr8), NONCE, KBS_JWK)
