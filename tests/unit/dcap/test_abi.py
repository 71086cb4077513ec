from __future__ import annotations

import contextlib
import dataclasses
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import EvidenceError, MalformedEvidence, UnsupportedEvidence
from broker.evidence.dcap.abi import (
    BODY_TYPE_SGX,
    BODY_TYPE_TD10,
    BODY_TYPE_TD15,
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    EnclaveReportBody,
    Quote,
    QuoteHeader,
    TdReportBody10,
    TdReportBody15,
    parse_quote,
    parse_record,
)

from .vectors import (
    DEBUG_TD_QUOTE,
    GCP_QUOTE,
    OCCLUM_QUOTE,
    SIGNAL_2022_QUOTE,
    SIGNAL_2023_QUOTE,
    SPR_QUOTE,
    spr_quote,
)

ALL_QUOTES = [DEBUG_TD_QUOTE, GCP_QUOTE, OCCLUM_QUOTE, SIGNAL_2022_QUOTE, SIGNAL_2023_QUOTE]


@pytest.mark.parametrize("path", ALL_QUOTES, ids=lambda p: p.parent.name)
def test_round_trip_is_exact(path: Path) -> None:
    data = path.read_bytes()
    assert parse_quote(data).to_bytes() == data


def test_spr_quote_without_test_marker_round_trips() -> None:
    data = spr_quote()
    quote = parse_quote(data)
    assert quote.to_bytes() == data
    assert quote.padding == 0


def test_spr_quote_test_marker_is_not_padding() -> None:
    # go-tdx-guest appends an ASCII note after the quote: not zero padding, so refused.
    with pytest.raises(MalformedEvidence, match="not zero padding"):
        parse_quote(SPR_QUOTE.read_bytes())


def test_gcp_quote_zero_padding_is_kept() -> None:
    quote = parse_quote(GCP_QUOTE.read_bytes())
    assert quote.padding == 8000 - 4935
    assert len(quote.to_bytes()) == 8000


def test_tdx_v4_fields_match_manifest() -> None:
    quote = parse_quote(DEBUG_TD_QUOTE.read_bytes())
    assert quote.header.version == 4
    assert quote.header.tee_type == 0x81
    assert quote.header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.header.user_data.hex() == "d099bfec0a477aa85a605dceabf2b10800000000"
    body = quote.body
    assert isinstance(body, TdReportBody10)
    assert quote.is_tdx
    assert body.tee_tcb_svn.hex() == "03000500000000000000000000000000"
    assert body.td_attributes.hex() == "0100001000000000"
    assert body.xfam.hex() == "e742060000000000"
    assert body.mr_td.hex() == (
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b6"
        "89cac1599ccea1b7d420483a9ce5f031"
    )
    assert body.rtmr2 == bytes(48)
    assert body.report_data.hex().startswith("7c71fe2c86eff65a")
    qe = quote.signature_data.qe
    assert quote.signature_data.nested
    assert qe.qe_report.isv_svn == 4
    assert qe.qe_report.mr_signer.hex().startswith("dc9e2a7c")
    assert qe.certification_data.type == CERT_PCK_CHAIN
    assert qe.certification_data.data.startswith(b"-----BEGIN CERTIFICATE-----")


def test_sgx_v3_fields_match_manifest() -> None:
    quote = parse_quote(OCCLUM_QUOTE.read_bytes())
    assert quote.header.version == 3
    assert (quote.header.qe_svn, quote.header.pce_svn) == (8, 13)
    body = quote.body
    assert isinstance(body, EnclaveReportBody)
    assert not quote.is_tdx
    assert not quote.signature_data.nested
    assert body.cpu_svn.hex() == "06060c0cffff00000000000000000000"
    assert body.misc_select == 1
    assert body.attributes.hex() == "0700000000000000e700000000000000"
    assert body.mr_enclave.hex() == (
        "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68"
    )
    assert body.report_data == b"test" + bytes(60)
    assert quote.signature_data.qe.qe_report.isv_prod_id == 1


def _v5(body_type: int, body: EnclaveReportBody | TdReportBody10) -> Quote:
    base = parse_quote(DEBUG_TD_QUOTE.read_bytes())
    header = dataclasses.replace(base.header, version=5)
    return Quote(header, body, base.signature_data, body_type=body_type)


def test_v5_round_trip_for_every_body_type() -> None:
    td10 = parse_quote(DEBUG_TD_QUOTE.read_bytes()).body
    assert isinstance(td10, TdReportBody10)
    td15 = TdReportBody15(
        **{f.name: getattr(td10, f.name) for f in dataclasses.fields(td10)},
        tee_tcb_svn2=bytes(16),
        mr_service_td=b"\x5a" * 48,
    )
    sgx = parse_quote(OCCLUM_QUOTE.read_bytes()).body
    for body_type, body in ((BODY_TYPE_TD15, td15), (BODY_TYPE_TD10, td10), (BODY_TYPE_SGX, sgx)):
        quote = _v5(body_type, body)
        data = quote.to_bytes()
        parsed = parse_quote(data)
        assert parsed == quote
        assert parsed.to_bytes() == data
        # The body descriptor is signed (A.4): header || TYPE || SIZE || body.
        assert parsed.signed_bytes() == data[: 48 + 6 + body.SIZE]
    parsed = parse_quote(_v5(BODY_TYPE_TD15, td15).to_bytes())
    assert isinstance(parsed.body, TdReportBody15)
    assert parsed.body.mr_service_td == b"\x5a" * 48


def test_v5_body_size_must_match_type() -> None:
    data = bytearray(_v5(BODY_TYPE_TD10, parse_quote(DEBUG_TD_QUOTE.read_bytes()).body).to_bytes())
    struct.pack_into("<I", data, 50, 648)
    with pytest.raises(MalformedEvidence, match="SIZE 648 != 584"):
        parse_quote(bytes(data))


def test_v5_unknown_body_type() -> None:
    data = bytearray(_v5(BODY_TYPE_TD10, parse_quote(DEBUG_TD_QUOTE.read_bytes()).body).to_bytes())
    struct.pack_into("<H", data, 48, 9)
    with pytest.raises(UnsupportedEvidence, match="body TYPE 9"):
        parse_quote(bytes(data))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "error", "match"),
    [
        (0, "<H", 2, UnsupportedEvidence, "header.version 2"),
        (2, "<H", 3, UnsupportedEvidence, "attestation_key_type 3"),
        (4, "<I", 0x42, UnsupportedEvidence, "tee_type 0x42"),
    ],
)
def test_unsupported_header_values(
    offset: int, fmt: str, value: int, error: type[EvidenceError], match: str
) -> None:
    data = bytearray(DEBUG_TD_QUOTE.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(error, match=match):
        parse_quote(bytes(data))


def test_v4_outer_certification_data_must_be_type_6() -> None:
    data = bytearray(DEBUG_TD_QUOTE.read_bytes())
    struct.pack_into("<H", data, 48 + 584 + 4 + 128, 5)
    with pytest.raises(UnsupportedEvidence, match="certification data type 5 != 6"):
        parse_quote(bytes(data))


def test_signature_data_length_must_be_exact() -> None:
    data = bytearray(OCCLUM_QUOTE.read_bytes())
    length = struct.unpack_from("<I", data, 432)[0]
    struct.pack_into("<I", data, 432, length - 1)
    with pytest.raises(MalformedEvidence):
        parse_quote(bytes(data))


def test_trailing_non_zero_byte_is_malformed() -> None:
    data = OCCLUM_QUOTE.read_bytes() + b"\x00\x00\x01"
    with pytest.raises(MalformedEvidence, match="3 bytes after the signature data"):
        parse_quote(data)


def test_struct_lengths_are_enforced_at_construction() -> None:
    header = parse_quote(OCCLUM_QUOTE.read_bytes()).header
    with pytest.raises(ValueError, match="user_data must be 20 bytes"):
        dataclasses.replace(header, user_data=b"x")
    with pytest.raises(ValueError, match="version must fit in 2 bytes"):
        dataclasses.replace(header, version=1 << 16)
    assert parse_record(QuoteHeader, header.to_bytes()) == header


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cut=st.integers(min_value=0, max_value=4935 - 1))
def test_truncated_quotes_are_malformed(cut: int) -> None:
    with pytest.raises(MalformedEvidence):
        parse_quote(spr_quote()[:cut])


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.binary(max_size=1500), version=st.sampled_from([3, 4, 5]))
def test_arbitrary_bytes_raise_only_evidence_errors(data: bytes, version: int) -> None:
    blob = struct.pack("<HH", version, 2) + data
    with contextlib.suppress(EvidenceError):
        parse_quote(blob)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(position=st.integers(min_value=0, max_value=4732), value=st.integers(1, 255))
def test_mutated_quotes_parse_or_raise_evidence_errors(position: int, value: int) -> None:
    data = bytearray(OCCLUM_QUOTE.read_bytes())
    data[position] ^= value
    try:
        quote = parse_quote(bytes(data))
    except EvidenceError:
        return
    assert quote.to_bytes() == bytes(data)
