"""TPMS_ATTEST, TPMT_SIGNATURE, TPML_PCR_SELECTION and TPMT_PUBLIC: every real structure
parses to what its manifest says and writes back byte for byte; damaged ones are malformed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import MalformedEvidence
from broker.evidence.tpm.abi import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    Alg,
    Attest,
    ClockInfo,
    PcrSelection,
    QuoteInfo,
    parse_attest,
    parse_public,
    parse_signature,
)
from broker.simulate.tpm import SoftwareAk

from .vectors import FIRMWARE_VERSION, GCE

AZURE = Path(__file__).parents[2] / "vectors" / "azure-vtpm"


def _azure_message(folder: str) -> bytes:
    doc = json.loads((AZURE / folder / "tpm-quote-v1.json").read_text())
    return bytes.fromhex(doc["message"])


@pytest.mark.parametrize("bank", ["sha1", "sha256", "sha384"])
def test_gce_quotes_parse_as_the_manifest_says_and_round_trip(bank: str) -> None:
    data = (GCE / f"nonce9009.quote_{bank}.attest").read_bytes()
    attest = parse_attest(data)
    assert attest.to_bytes() == data
    assert (attest.magic, attest.type) == (TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE)
    assert attest.extra_data == b"\x90\x09"
    assert attest.firmware_version == FIRMWARE_VERSION
    assert isinstance(attest.attested, QuoteInfo)
    (selection,) = attest.attested.pcr_select
    assert selection.hash_alg == {"sha1": 4, "sha256": 11, "sha384": 12}[bank]
    assert selection.pcrs == tuple(range(24))
    signature = (GCE / f"nonce9009.quote_{bank}.sig").read_bytes()
    parsed = parse_signature(signature)
    assert (parsed.sig_alg, parsed.hash_alg, len(parsed.rsa)) == (Alg.RSASSA, Alg.SHA256, 256)
    assert parsed.to_bytes() == signature


@pytest.mark.parametrize("folder", ["trustee-az-snp-vtpm", "trustee-az-tdx-vtpm"])
def test_azure_quotes_parse_and_round_trip(folder: str) -> None:
    data = _azure_message(folder)
    attest = parse_attest(data)
    assert attest.to_bytes() == data
    assert attest.extra_data == b"challenge"
    assert attest.firmware_version == 0x2020031200120003  # the TDX manifest's firmwareVersion


def test_gce_ak_public_area_round_trips_and_is_the_certified_key() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    data = (GCE / "ak_pub.tpmt").read_bytes()
    public = parse_public(data)
    assert public.to_bytes() == data
    assert (public.type, public.name_alg, public.attributes) == (Alg.RSA, Alg.SHA256, 0x50072)
    assert (public.scheme, public.scheme_hash, public.key_bits) == (Alg.RSASSA, Alg.SHA256, 2048)
    cert = x509.load_der_x509_certificate((GCE / "ak_cert.der").read_bytes())
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert public.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert public.name()[:2] == b"\x00\x0b"


@pytest.mark.parametrize("scheme", [Alg.RSASSA, Alg.RSAPSS, Alg.ECDSA])
def test_synthetic_structures_round_trip(scheme: int) -> None:
    ak = SoftwareAk.generate(scheme)
    public = ak.public()
    assert parse_public(public.to_bytes()) == public
    quote = ak.quote({Alg.SHA256: {0: bytes(32), 7: b"\x07" * 32}}, b"nonce")
    assert parse_attest(quote.message).to_bytes() == quote.message
    assert parse_signature(quote.signature.to_bytes()) == quote.signature


_CLOCKS = st.builds(
    ClockInfo,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)


@given(
    pcrs=st.sets(st.integers(0, 23), max_size=24),
    extra=st.binary(max_size=64),
    clock=_CLOCKS,
    firmware=st.integers(0, 2**64 - 1),
    digest=st.binary(max_size=64),
)
def test_any_quote_attest_round_trips(
    pcrs: set[int], extra: bytes, clock: ClockInfo, firmware: int, digest: bytes
) -> None:
    attest = Attest(
        TPM_GENERATED_VALUE,
        TPM_ST_ATTEST_QUOTE,
        b"\x00\x0b" + bytes(32),
        extra,
        clock,
        firmware,
        QuoteInfo((PcrSelection(Alg.SHA256, tuple(sorted(pcrs))),), digest),
    )
    assert parse_attest(attest.to_bytes()) == attest


def test_another_attestation_type_keeps_its_attested_bytes() -> None:
    data = bytearray(_azure_message("trustee-az-snp-vtpm"))
    data[4:6] = (0x8017).to_bytes(2, "big")  # TPM_ST_ATTEST_CERTIFY
    attest = parse_attest(bytes(data))
    assert attest.type == 0x8017
    assert isinstance(attest.attested, bytes)
    assert attest.to_bytes() == bytes(data)


def test_a_pcr_bitmap_lists_pcrs_lowest_first() -> None:
    selection = PcrSelection(Alg.SHA256, (0, 7, 8, 23))
    assert selection.bitmap() == bytes([0x81, 0x01, 0x80])
    assert selection.to_bytes() == b"\x00\x0b\x03\x81\x01\x80"


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (1, "TPMS_ATTEST: attested.quote.pcrDigest needs 32 bytes"),
        (40, "TPMS_ATTEST: attested.quote.pcrSelect"),
        (77, "TPMS_ATTEST: extraData needs 9 bytes at offset 44, only 1 left"),
    ],
)
def test_a_truncated_attest_is_malformed(cut: int, match: str) -> None:
    data = _azure_message("trustee-az-snp-vtpm")
    with pytest.raises(MalformedEvidence, match=match):
        parse_attest(data[:-cut])


def test_bytes_after_a_quote_are_malformed() -> None:
    data = _azure_message("trustee-az-snp-vtpm") + b"\x00"
    with pytest.raises(MalformedEvidence) as refused:
        parse_attest(data)
    assert refused.value.detail == (
        "TPMS_ATTEST: 1 unexpected bytes after attested.quote at offset 122"
    )


def test_a_yes_no_other_than_0_or_1_is_malformed() -> None:
    data = bytearray(_azure_message("trustee-az-snp-vtpm"))
    attest = parse_attest(bytes(data))
    safe_at = 4 + 2 + 2 + len(attest.qualified_signer) + 2 + len(attest.extra_data) + 16
    data[safe_at] = 2
    with pytest.raises(MalformedEvidence) as refused:
        parse_attest(bytes(data))
    assert refused.value.detail == ("TPMS_ATTEST: clockInfo.safe 2 is not TPMI_YES_NO (0 or 1)")


def test_a_selection_wider_than_pcr_select_max_is_malformed() -> None:
    data = bytearray(_azure_message("trustee-az-snp-vtpm"))
    at = data.index(b"\x00\x00\x00\x01\x00\x0b\x03") + 6  # count 1, sha256, sizeofSelect
    data[at] = 33
    with pytest.raises(MalformedEvidence, match="sizeofSelect 33 > PCR_SELECT_MAX 32"):
        parse_attest(bytes(data))


def test_more_selections_than_banks_is_malformed() -> None:
    data = bytearray(_azure_message("trustee-az-snp-vtpm"))
    at = data.index(b"\x00\x00\x00\x01\x00\x0b\x03")
    data[at : at + 4] = struct.pack(">I", 5)
    with pytest.raises(MalformedEvidence, match=r"attested.quote.pcrSelect.count 5 > 4 banks"):
        parse_attest(bytes(data))


def test_a_signature_of_another_scheme_is_malformed() -> None:
    with pytest.raises(MalformedEvidence) as refused:
        parse_signature(b"\x00\x1a\x00\x0b\x00\x00")  # TPM_ALG_ECDAA
    assert refused.value.detail == ("TPMT_SIGNATURE: sigAlg 0x001a is not RSASSA, RSAPSS or ECDSA")


def test_a_public_area_of_another_type_is_malformed() -> None:
    data = bytearray((GCE / "ak_pub.tpmt").read_bytes())
    data[0:2] = (0x0008).to_bytes(2, "big")  # TPM_ALG_KEYEDHASH
    with pytest.raises(MalformedEvidence, match="TPMT_PUBLIC: type 0x0008 is not RSA or ECC"):
        parse_public(bytes(data))


def test_an_ecc_public_area_off_its_curve_is_malformed() -> None:
    public = SoftwareAk.generate(Alg.ECDSA).public()
    broken = parse_public(public.to_bytes()[:-1] + bytes([public.y[-1] ^ 1]))
    with pytest.raises(MalformedEvidence, match="TPMT_PUBLIC: unique is not a usable key"):
        broken.public_key()
