"""TPM2_Quote verification: the real GCE quotes verify in every bank; each check refuses
what it must, with the error naming the field, found and wanted."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.errors import MalformedEvidence, PcrMismatch, SignatureInvalid, UnsupportedEvidence
from broker.evidence.tpm.abi import (
    TPM_ST_ATTEST_QUOTE,
    Alg,
    QuoteInfo,
    parse_attest,
    parse_signature,
)
from broker.evidence.tpm.quote import Quote, spki_fingerprint, verify_quote, verify_quotes
from broker.simulate.tpm import SoftwareAk, zero_pcrs

from .vectors import SHA1_PCR0, SHA256_PCRS, SHA384_PCR0, ak_cert, quote


def _gce_ak() -> rsa.RSAPublicKey:
    key = x509.load_der_x509_certificate(ak_cert()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture(scope="module")
def rsa_ak() -> SoftwareAk:
    return SoftwareAk.generate()


def test_the_three_gce_quotes_verify_together() -> None:
    verified = verify_quotes([quote("sha1"), quote("sha256"), quote("sha384")], _gce_ak())
    assert verified.pcrs[Alg.SHA1][0].hex() == SHA1_PCR0
    assert {i: verified.pcrs[Alg.SHA256][i].hex() for i in SHA256_PCRS} == SHA256_PCRS
    assert verified.pcrs[Alg.SHA384][0].hex() == SHA384_PCR0
    assert verified.attest.extra_data == b"\x90\x09"
    assert isinstance(verified.attest.attested, QuoteInfo)
    assert verified.attest.attested.pcr_select[0].hash_alg == Alg.SHA256
    assert verified.ak_fingerprint == spki_fingerprint(_gce_ak())


def _flip(data: bytes, at: int) -> bytes:
    flipped = bytearray(data)
    flipped[at] ^= 0x01
    return bytes(flipped)


def test_a_flipped_quote_byte_is_a_bad_signature() -> None:
    good = quote("sha256")
    bad = dataclasses.replace(good, message=_flip(good.message, 50))  # in extraData
    with pytest.raises(SignatureInvalid) as refused:
        verify_quote(bad, _gce_ak())
    assert refused.value.detail == (
        "TPM quote: TPMT_SIGNATURE RSASSA/sha256 over TPMS_ATTEST does not verify with the AK "
        f"(SPKI SHA-256 {spki_fingerprint(_gce_ak())[:16]}...)"
    )


def test_a_flipped_signature_byte_is_a_bad_signature() -> None:
    good = quote("sha256")
    signature = dataclasses.replace(good.signature, rsa=_flip(good.signature.rsa, 0))
    with pytest.raises(SignatureInvalid, match="does not verify with the AK"):
        verify_quote(dataclasses.replace(good, signature=signature), _gce_ak())


def test_a_flipped_pcr_byte_is_a_pcr_mismatch() -> None:
    good = quote("sha256")
    values = dict(good.pcrs[Alg.SHA256])
    values[4] = _flip(values[4], 31)
    info = parse_attest(good.message).attested
    assert isinstance(info, QuoteInfo)
    with pytest.raises(PcrMismatch) as refused:
        verify_quote(dataclasses.replace(good, pcrs={Alg.SHA256: values}), _gce_ak())
    digest = info.pcr_digest.hex()
    assert refused.value.detail.startswith(
        f"TPM quote: TPMS_QUOTE_INFO.pcrDigest {digest} != sha256 of the PCR values given "
    )


def test_another_ak_is_a_bad_signature(rsa_ak: SoftwareAk) -> None:
    with pytest.raises(SignatureInvalid, match="does not verify with the AK"):
        verify_quote(quote("sha256"), rsa_ak.public_key())


@pytest.mark.parametrize(
    ("scheme", "hash_alg"),
    [
        (Alg.RSASSA, Alg.SHA256),
        (Alg.RSASSA, Alg.SHA384),
        (Alg.RSAPSS, Alg.SHA256),
        (Alg.RSAPSS, Alg.SHA384),
        (Alg.ECDSA, Alg.SHA256),
        (Alg.ECDSA, Alg.SHA384),
    ],
)
def test_every_scheme_and_hash_verifies(scheme: int, hash_alg: int) -> None:
    ak = SoftwareAk.generate(scheme, hash_alg)
    made = ak.quote({Alg.SHA256: zero_pcrs()}, b"nonce")
    attest, selected = verify_quote(made, ak.public_key())
    assert attest.extra_data == b"nonce"
    assert selected == {Alg.SHA256: zero_pcrs()}


def test_an_rsa_signature_for_an_ec_ak_is_a_bad_signature(rsa_ak: SoftwareAk) -> None:
    ec_ak = SoftwareAk.generate(Alg.ECDSA)
    with pytest.raises(SignatureInvalid) as refused:
        verify_quote(rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b""), ec_ak.public_key())
    assert refused.value.detail == (
        "TPM quote: TPMT_SIGNATURE RSASSA/sha256 over TPMS_ATTEST: the AK is not an RSA key"
    )


def test_a_sha1_signature_is_unsupported() -> None:
    ak = SoftwareAk.generate(Alg.RSASSA, Alg.SHA1)
    with pytest.raises(UnsupportedEvidence) as refused:
        verify_quote(ak.quote({Alg.SHA256: zero_pcrs()}, b""), ak.public_key())
    assert refused.value.detail == (
        "TPM quote: TPMT_SIGNATURE hash sha1 is not SHA-256, SHA-384 or SHA-512"
    )


def test_a_signed_structure_without_the_tpm_magic_is_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b"")
    forged = rsa_ak.resign(made, b"\x00" + made.message[1:])
    with pytest.raises(MalformedEvidence) as refused:
        verify_quote(forged, rsa_ak.public_key())
    assert refused.value.detail == (
        "TPM quote: TPMS_ATTEST.magic 0x00544347 != TPM_GENERATED_VALUE 0xff544347: not a "
        "structure the TPM generated"
    )


def test_an_attestation_other_than_a_quote_is_unsupported(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b"")
    certify = made.message[:4] + (0x8017).to_bytes(2, "big") + made.message[6:]
    with pytest.raises(UnsupportedEvidence) as refused:
        verify_quote(rsa_ak.resign(made, certify), rsa_ak.public_key())
    assert refused.value.detail == (
        f"TPM quote: TPMS_ATTEST.type 0x8017 != TPM_ST_ATTEST_QUOTE {TPM_ST_ATTEST_QUOTE:#06x}"
    )


def test_a_selected_pcr_not_given_is_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b"")
    values = dict(made.pcrs[Alg.SHA256])
    del values[9]
    with pytest.raises(MalformedEvidence) as refused:
        verify_quote(dataclasses.replace(made, pcrs={Alg.SHA256: values}), rsa_ak.public_key())
    assert refused.value.detail == "TPM quote: pcrs.sha256.9 is not given; the quote selects it"


def test_a_pcr_given_but_not_selected_is_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: {0: bytes(32)}}, b"")
    extra = dataclasses.replace(made, pcrs={Alg.SHA256: {0: bytes(32), 5: bytes(32)}})
    with pytest.raises(MalformedEvidence) as refused:
        verify_quote(extra, rsa_ak.public_key())
    assert refused.value.detail == (
        "TPM quote: pcrs.sha256.5 is given but the quote does not select it"
    )


def test_a_bank_given_but_not_selected_is_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: {0: bytes(32)}}, b"")
    extra = dataclasses.replace(made, pcrs={**made.pcrs, Alg.SHA1: {0: bytes(20)}})
    with pytest.raises(MalformedEvidence) as refused:
        verify_quote(extra, rsa_ak.public_key())
    assert refused.value.detail == (
        "TPM quote: PCR values of the sha1 bank are given but the quote selects none of it"
    )


def test_a_value_of_the_wrong_size_is_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: {0: bytes(32)}}, b"")
    short = dataclasses.replace(made, pcrs={Alg.SHA256: {0: bytes(20)}})
    with pytest.raises(MalformedEvidence, match=r"pcrs.sha256.0 is 20 bytes, not 32"):
        verify_quote(short, rsa_ak.public_key())


def test_a_sha512_bank_is_unsupported(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA512: {0: bytes(64)}}, b"")
    with pytest.raises(UnsupportedEvidence) as refused:
        verify_quote(made, rsa_ak.public_key())
    assert refused.value.detail == (
        "TPM quote: TPML_PCR_SELECTION names the sha512 bank; keybroker reads sha1, sha256 "
        "and sha384"
    )


def test_quotes_of_one_attestation_must_carry_one_extra_data(rsa_ak: SoftwareAk) -> None:
    first = rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b"one")
    second = rsa_ak.quote({Alg.SHA384: zero_pcrs(Alg.SHA384)}, b"two")
    with pytest.raises(MalformedEvidence) as refused:
        verify_quotes([first, second], rsa_ak.public_key())
    assert refused.value.detail == (
        "the TPM quotes carry different extraData (6f6e65 and 74776f); one attestation "
        "answers one challenge"
    )


def test_two_quotes_of_one_bank_are_malformed(rsa_ak: SoftwareAk) -> None:
    made = rsa_ak.quote({Alg.SHA256: zero_pcrs()}, b"")
    with pytest.raises(MalformedEvidence, match="TPM quote 1 selects the sha256 bank again"):
        verify_quotes([made, made], rsa_ak.public_key())


def test_no_quote_is_malformed(rsa_ak: SoftwareAk) -> None:
    with pytest.raises(MalformedEvidence, match="holds no TPM quote"):
        verify_quotes([], rsa_ak.public_key())


def test_a_pcr_digest_uses_the_signature_hash(rsa_ak: SoftwareAk) -> None:
    """The GCE SHA-1 bank quote is signed with SHA-256, and so is its PCR digest."""
    good = quote("sha1")
    assert parse_signature(good.signature.to_bytes()).hash_alg == Alg.SHA256
    verify_quote(good, _gce_ak())
    assert isinstance(good, Quote)
