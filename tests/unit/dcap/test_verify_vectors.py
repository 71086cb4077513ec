"""The Intel quote verification model on the real vectors, and one-byte flips of them."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    CollateralExpired,
    CollateralInvalid,
    CollateralUnavailable,
    EvidenceError,
    MalformedEvidence,
    SignatureInvalid,
    TcbLevelNotFound,
    UnsupportedEvidence,
)
from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import parse_quote
from broker.evidence.dcap.collateral import TcbStatus
from broker.evidence.dcap.verify import (
    VerifiedQuote,
    _tcb_signer,
    authenticate_quote,
    clear_caches,
    verify_quote,
)
from broker.evidence.trust import load_certificates

from .vectors import (
    COLLATERAL_LESS_NOW,
    DEBUG_TD_QUOTE,
    GCP_QUOTE,
    INTEL_ROOTS,
    JUNE_2023,
    OCCLUM_QUOTE,
    SIGNAL_2022_DIR,
    SIGNAL_2022_NOW,
    SIGNAL_2022_QUOTE,
    SIGNAL_2023_DIR,
    SIGNAL_2023_NOW,
    SIGNAL_2023_QUOTE,
    SPR_QUOTE,
    signal_collateral,
    spr_collateral,
    spr_quote,
)

# Offsets in a v4 TDX quote: header 48, body 584, signature data length 4, then signature 64,
# attestation key 64, certification data type 6 header 6, QE report 384, QE report signature
# 64, QE auth data size 2 + data.
TD_BODY = 48
SIG_DATA = 48 + 584 + 4
ATT_KEY = SIG_DATA + 64
QE_REPORT = SIG_DATA + 128 + 6
QE_REPORT_SIGNATURE = QE_REPORT + 384
QE_AUTH_DATA = QE_REPORT_SIGNATURE + 64 + 2


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def _flip(data: bytes, offset: int) -> bytes:
    flipped = bytearray(data)
    flipped[offset] ^= 0x01
    return bytes(flipped)


def _debug_td(evidence: bytes | None = None, **collateral: bytes) -> VerifiedQuote:
    return verify_quote(
        DEBUG_TD_QUOTE.read_bytes() if evidence is None else evidence,
        {**spr_collateral(), **collateral},
        now=JUNE_2023,
        tee=Tee.TDX,
    )


# --- outcomes the manifests state -----------------------------------------------------------


def test_debug_td_is_up_to_date() -> None:
    result = verify_quote(DEBUG_TD_QUOTE.read_bytes(), spr_collateral(), now=JUNE_2023, tee=Tee.TDX)
    assert result.appraisal.status is TcbStatus.UP_TO_DATE
    assert result.appraisal.advisory_ids == ()
    assert result.appraisal.tcb_date == datetime(2023, 2, 15, tzinfo=UTC)
    assert result.appraisal.tcb_evaluation_data_number == 15
    assert result.root.name == "intel-sgx-root-ca"
    assert result.pck.fmspc.hex() == "50806f000000"
    # The older of TCB Info (2023-06-18) and QE Identity (2023-06-08).
    assert result.collateral_time == datetime(2023, 6, 8, 7, 24, 59, tzinfo=UTC)
    assert result.warnings == ()


def test_debug_td_with_pinned_tcb_signing_certificate() -> None:
    collateral = spr_collateral()
    del collateral["tcb_signing_chain"]
    result = verify_quote(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023, tee=Tee.TDX)
    assert result.appraisal.status is TcbStatus.UP_TO_DATE


def test_spr_quote_has_no_matching_tcb_level() -> None:
    with pytest.raises(TcbLevelNotFound, match=r"PCK SGX TCB components \[3,3,2,2,2,1,0,2"):
        verify_quote(spr_quote(), spr_collateral(), now=JUNE_2023, tee=Tee.TDX)


def test_spr_file_as_published_is_malformed() -> None:
    with pytest.raises(MalformedEvidence, match="39 bytes after the signature data"):
        verify_quote(SPR_QUOTE.read_bytes(), spr_collateral(), now=JUNE_2023, tee=Tee.TDX)


def test_signal_2023_sw_hardening_needed() -> None:
    result = verify_quote(
        SIGNAL_2023_QUOTE.read_bytes(),
        signal_collateral(SIGNAL_2023_DIR),
        now=SIGNAL_2023_NOW,
        tee=Tee.SGX,
    )
    assert result.appraisal.status is TcbStatus.SW_HARDENING_NEEDED
    assert result.appraisal.advisory_ids == ("INTEL-SA-00615", "INTEL-SA-00657")
    assert result.appraisal.tcb_evaluation_data_number == 14


def test_signal_2022_up_to_date_with_tcb_info_v2() -> None:
    result = verify_quote(
        SIGNAL_2022_QUOTE.read_bytes(),
        signal_collateral(SIGNAL_2022_DIR),
        now=SIGNAL_2022_NOW,
        tee=Tee.SGX,
    )
    assert result.appraisal.status is TcbStatus.UP_TO_DATE
    assert result.appraisal.tcb_date == datetime(2021, 11, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "tee"), [(GCP_QUOTE, Tee.TDX), (OCCLUM_QUOTE, Tee.SGX)], ids=["gcp", "occlum"]
)
def test_chain_only_vectors_are_collateral_unavailable(path: Path, tee: Tee) -> None:
    # Signatures and the PCK chain verify, then the missing TCB collateral stops it.
    with pytest.raises(CollateralUnavailable, match="verified, but the TCB cannot be appraised"):
        verify_quote(path.read_bytes(), {}, now=COLLATERAL_LESS_NOW, tee=tee)


def test_chain_only_vector_with_a_bad_signature_is_still_rejected_as_such() -> None:
    evidence = _flip(GCP_QUOTE.read_bytes(), TD_BODY + 136)
    with pytest.raises(SignatureInvalid, match="quote signature"):
        verify_quote(evidence, {}, now=COLLATERAL_LESS_NOW, tee=Tee.TDX)


def test_missing_collateral_is_named() -> None:
    collateral = spr_collateral()
    del collateral["pck_crl"]
    with pytest.raises(CollateralUnavailable, match=r"without pck_crl$"):
        verify_quote(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023, tee=Tee.TDX)


def test_wrong_tee() -> None:
    with pytest.raises(UnsupportedEvidence, match="carries a TDX body, not SGX"):
        verify_quote(DEBUG_TD_QUOTE.read_bytes(), {}, now=JUNE_2023, tee=Tee.SGX)


# --- one-byte flips in each signed region ---------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "match"),
    [
        (28, "quote signature"),  # header.user_data
        (TD_BODY + 136, "quote signature"),  # MRTD
        (TD_BODY + 520, "quote signature"),  # REPORTDATA
        (SIG_DATA + 5, "quote signature"),  # the signature itself
        (QE_REPORT + 96, "QE report signature"),  # QE report reserved2
        (QE_REPORT + 320, "QE report signature"),  # QE REPORTDATA
        (QE_REPORT_SIGNATURE + 7, "QE report signature"),
        (QE_AUTH_DATA, r"QE REPORTDATA\[0:32\]"),  # QE authentication data
        (ATT_KEY + 3, r"QE REPORTDATA\[0:32\]"),  # attestation key
    ],
)
def test_flipped_quote_byte_is_a_signature_error(offset: int, match: str) -> None:
    evidence = _flip(DEBUG_TD_QUOTE.read_bytes(), offset)
    with pytest.raises(SignatureInvalid, match=match):
        _debug_td(evidence)


def test_flipped_sgx_quote_body() -> None:
    evidence = _flip(SIGNAL_2023_QUOTE.read_bytes(), 48 + 64)  # MRENCLAVE
    with pytest.raises(SignatureInvalid, match="quote signature"):
        verify_quote(evidence, signal_collateral(SIGNAL_2023_DIR), now=SIGNAL_2023_NOW, tee=Tee.SGX)


def test_flipped_pck_certificate_signature() -> None:
    data = DEBUG_TD_QUOTE.read_bytes()
    # Flip a base64 character inside the PCK leaf's signature (its last line of base64).
    end = data.index(b"-----END CERTIFICATE-----")
    position = end - 10
    replacement = b"A" if data[position : position + 1] != b"A" else b"B"
    evidence = data[:position] + replacement + data[position + 1 :]
    with pytest.raises(
        ChainInvalid,
        match=r"^PCK certificate 'Intel SGX PCK Certificate' is not signed by "
        r"'Intel SGX PCK Platform CA'",
    ):
        _debug_td(evidence)


@pytest.mark.parametrize("name", ["tcb_info", "qe_identity"])
def test_flipped_collateral_json_is_invalid(name: str) -> None:
    collateral = spr_collateral()
    data = collateral[name]
    # Change one hex digit of the signed member's "issueDate" year (2023 -> 2022).
    position = data.index(b'"issueDate":"2023') + len(b'"issueDate":"202')
    collateral[name] = data[:position] + b"2" + data[position + 1 :]
    with pytest.raises(CollateralInvalid, match="signature does not verify"):
        verify_quote(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023, tee=Tee.TDX)


@pytest.mark.parametrize("name", ["pck_crl", "root_crl"])
def test_flipped_crl_is_invalid(name: str) -> None:
    collateral = spr_collateral()
    collateral[name] = _flip(collateral[name], len(collateral[name]) - 10)  # signature
    with pytest.raises(CollateralInvalid, match=f"{name}"):
        verify_quote(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023, tee=Tee.TDX)


def test_crl_from_the_wrong_issuer() -> None:
    collateral = spr_collateral()
    collateral["root_crl"] = collateral["pck_crl"]
    with pytest.raises(CollateralInvalid, match="root_crl issuer 'Intel SGX PCK Platform CA'"):
        verify_quote(DEBUG_TD_QUOTE.read_bytes(), collateral, now=JUNE_2023, tee=Tee.TDX)


def test_tcb_signing_chain_must_be_a_tcb_signing_certificate() -> None:
    chain = (INTEL_ROOTS / "intel_sgx_pck_platform_ca_chain.pem").read_bytes()
    with pytest.raises(ChainInvalid, match="does not contain 'SGX TCB Signing'"):
        _debug_td(tcb_signing_chain=chain)


def _tcb_signing_der() -> bytes:
    pem = spr_collateral()["tcb_signing_chain"]
    return load_certificates(pem)[0].public_bytes(Encoding.DER)


# Bytes whose flip once escaped as a bare pyca/cryptography exception (InvalidVersion,
# ValueError from a lazily parsed name, TypeError from a name attribute of the wrong type):
# the loaders in trust.py parse every field at load, so each is damaged collateral.
@pytest.mark.parametrize(
    ("name", "offset", "xor", "match"),
    [
        ("tcb_signing_chain", 12, 0x01, "tcb_signing_chain: certificate does not parse"),
        ("tcb_signing_chain", 58, 0x01, "tcb_signing_chain: certificate does not parse"),
        ("tcb_signing_chain", 149, 0x10, "tcb_signing_chain: certificate does not parse"),
        ("root_crl", 9, 0x10, "root_crl: DER CRL does not parse"),
        ("root_crl", 33, 0x01, "root_crl: DER CRL does not parse"),
        ("root_crl", 124, 0x10, "root_crl: DER CRL does not parse"),
    ],
)
def test_unreadable_collateral_fields_are_collateral_invalid(
    name: str, offset: int, xor: int, match: str
) -> None:
    collateral = spr_collateral()
    data = bytearray(_tcb_signing_der() if name == "tcb_signing_chain" else collateral[name])
    data[offset] ^= xor
    with pytest.raises(CollateralInvalid, match=f"^{match}"):
        _debug_td(**{**collateral, name: bytes(data)})


# --- time -----------------------------------------------------------------------------------


def test_collateral_expires() -> None:
    # The PCK CRL's nextUpdate (2023-07-08T07:27:52Z) is the first to pass.
    with pytest.raises(CollateralExpired, match="pck_crl nextUpdate 2023-07-08T07:27:52Z"):
        verify_quote(
            DEBUG_TD_QUOTE.read_bytes(),
            spr_collateral(),
            now=JUNE_2023 + timedelta(days=8),
            tee=Tee.TDX,
        )


def test_tcb_info_not_yet_issued() -> None:
    with pytest.raises(CollateralExpired, match="TCB Info issueDate 2023-06-18T08:42:58Z"):
        verify_quote(
            DEBUG_TD_QUOTE.read_bytes(),
            spr_collateral(),
            now=datetime(2023, 6, 10, tzinfo=UTC),
            tee=Tee.TDX,
        )


def test_pck_expired_in_2053() -> None:
    with pytest.raises(CertificateExpired, match="PCK certificate 'Intel SGX PCK Certificate'"):
        verify_quote(
            DEBUG_TD_QUOTE.read_bytes(),
            spr_collateral(),
            now=datetime(2053, 7, 1, tzinfo=UTC),
            tee=Tee.TDX,
        )


def test_no_pinned_tcb_signing_certificate_before_2018() -> None:
    # The PCK (valid from 2023) fails first; the next test reaches the pinned certificates.
    collateral = spr_collateral()
    del collateral["tcb_signing_chain"]
    with pytest.raises(
        CertificateExpired,
        match=r"^PCK certificate 'Intel SGX PCK Certificate' is not valid before 2023-02-07",
    ):
        verify_quote(
            DEBUG_TD_QUOTE.read_bytes(),
            collateral,
            now=datetime(2018, 1, 1, tzinfo=UTC),
            tee=Tee.TDX,
        )


@pytest.mark.parametrize(
    "now",
    [datetime(2018, 5, 21, 10, 50, tzinfo=UTC), datetime(2032, 5, 6, 9, 26, tzinfo=UTC)],
    ids=["before-2018-05-21", "after-2032-05-06"],
)
def test_no_pinned_tcb_signing_certificate_is_valid_at_now(now: datetime) -> None:
    # The pinned certificates cover 2018-05-21T10:50:10Z..2032-05-06T09:25:00Z; the real PCK
    # chain (whose root is the pinned Intel root) is valid only inside that span, so the
    # helper is driven directly with it.
    chain = authenticate_quote(DEBUG_TD_QUOTE.read_bytes(), {}, now=JUNE_2023, tee=Tee.TDX).chain
    instant = re.escape(now.isoformat())
    with pytest.raises(
        CertificateExpired,
        match=rf"^no pinned Intel SGX TCB Signing certificate is valid at {instant}$",
    ):
        _tcb_signer(None, chain, now)


def test_results_do_not_depend_on_the_caches() -> None:
    evidence = DEBUG_TD_QUOTE.read_bytes()
    first = verify_quote(evidence, spr_collateral(), now=JUNE_2023, tee=Tee.TDX)
    second = verify_quote(evidence, spr_collateral(), now=JUNE_2023, tee=Tee.TDX)
    assert first == second
    # A cached CRL must still be checked against the instant.
    with pytest.raises(CollateralExpired):
        verify_quote(evidence, spr_collateral(), now=JUNE_2023 + timedelta(days=30), tee=Tee.TDX)
    # A cached PCK chain must still be valid at the instant.
    with pytest.raises(CertificateExpired, match="PCK certificate"):
        verify_quote(evidence, spr_collateral(), now=datetime(2053, 7, 1, tzinfo=UTC), tee=Tee.TDX)
    # A cached QE report must not excuse a flipped quote.
    with pytest.raises(SignatureInvalid):
        _debug_td(_flip(evidence, TD_BODY + 200))


def test_signature_data_length_field_is_structural() -> None:
    data = bytearray(DEBUG_TD_QUOTE.read_bytes())
    struct.pack_into("<I", data, TD_BODY + 584, 10)
    with pytest.raises(MalformedEvidence, match=r"signature needs 64 bytes at offset 0, only 10"):
        _debug_td(bytes(data))


_QUOTE = DEBUG_TD_QUOTE.read_bytes()
_PCK_PEM = parse_quote(_QUOTE).signature_data.qe.certification_data.data
_PCK_PEM_START = _QUOTE.index(_PCK_PEM)
#: The inner certification data header (type 2 bytes, size 4 bytes) before the PEM chain.
_CERT_DATA_START = _PCK_PEM_START - 6


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0, max_value=4935), value=st.integers(1, 255))
def test_mutated_quotes_raise_only_evidence_errors(position: int, value: int) -> None:
    data = bytearray(_QUOTE)
    position %= len(data)
    data[position] ^= value
    if position < _CERT_DATA_START:
        # Header and body (signed by the attestation key), the signature, the attestation key
        # and QE authentication data (bound by QE REPORTDATA), the QE report and its signature
        # (signed by the PCK), and the lengths and types that frame them: all refused.
        with pytest.raises(EvidenceError):
            _debug_td(bytes(data))
        return
    try:
        _debug_td(bytes(data))
    except EvidenceError:
        return
    # Accepted only where nothing is verified: the unsigned certification data type (5 -> 4,
    # a PCK leaf, reads the same certificates), inside the copy of the root (a root is trusted
    # by its pinned bytes, not by the copy a quote carries), PEM whitespace, or text outside
    # the PEM blocks. The PCK and its CA that verified are the original certificates.
    mutated = load_certificates(bytes(data[_PCK_PEM_START:]))
    assert mutated[:2] == load_certificates(_PCK_PEM)[:2]


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4935))
def test_truncated_quotes_are_malformed_end_to_end(cut: int) -> None:
    with pytest.raises(MalformedEvidence):
        _debug_td(DEBUG_TD_QUOTE.read_bytes()[: cut % 4936])
