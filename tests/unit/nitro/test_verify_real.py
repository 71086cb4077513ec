"""The three real AWS documents: verified at their manifest instants, and tampered with."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    EvidenceError,
    MalformedEvidence,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence.claims import SignerOrigin, Tee
from broker.evidence.nitro import VERIFIER
from broker.evidence.nitro.abi import parse_signed_document
from broker.evidence.nitro.verify import verify, verify_document
from broker.evidence.registry import verifier_for
from tests.unit.mutation import flips
from tests.unit.nitro.vectors import (
    DEBUG,
    GA,
    IGNORE_NAME_WARNINGS,
    PRODUCTION,
    REAL_DOCUMENTS,
    RealDocument,
)


def test_registry_finds_the_nitro_verifier() -> None:
    assert verifier_for("nitro") is VERIFIER
    assert VERIFIER.tee is Tee.NITRO
    assert VERIFIER.collateral_options == ()


def test_real_documents_verify_at_their_manifest_instant(real: RealDocument) -> None:
    claims = verify(real.data, {}, now=real.at)
    assert claims.tee is Tee.NITRO
    assert claims.signer.vendor == "aws"
    assert claims.signer.origin is SignerOrigin.INFRASTRUCTURE_PROVIDER
    assert claims.signer.root == "aws-nitro-enclaves-root-g1"
    assert claims.signer.key == "nitro"
    assert claims.signer.product is None
    assert claims.debug is real.debug
    assert claims.report_data is None
    assert claims.evidence_time == real.timestamp
    assert claims.lookup("module_id") == real.module_id
    assert claims.lookup("timestamp") == int(real.timestamp.timestamp() * 1000)
    assert claims.lookup("digest") == "SHA384"
    assert sorted(claims.lookup("pcrs"), key=int) == [str(i) for i in range(16)]
    for index, value in real.pcrs.items():
        assert claims.lookup(f"pcrs.{index}") == value
    for index, (first, last) in real.pcr_prefixes.items():
        pcr = claims.lookup(f"pcrs.{index}")
        assert pcr.startswith(first)
        assert pcr.endswith(last)
    assert claims.lookup("public_key") == real.public_key
    assert claims.lookup("user_data") == real.user_data
    nonce = claims.lookup("nonce")
    if real.nonce is None:
        assert nonce is None
    else:
        length, first, last = real.nonce
        assert len(bytes.fromhex(nonce)) == length
        assert nonce.startswith(first)
        assert nonce.endswith(last)


def test_debug_flags() -> None:
    assert verify(PRODUCTION.data, {}, now=PRODUCTION.at).debug is False
    assert verify(DEBUG.data, {}, now=DEBUG.at).debug is True
    assert verify(GA.data, {}, now=GA.at).debug is True


def test_claims_document_names() -> None:
    document = verify(DEBUG.data, {}, now=DEBUG.at).document()
    assert set(document) == {
        "tee",
        "signer",
        "debug",
        "module_id",
        "timestamp",
        "digest",
        "pcrs",
        "public_key",
        "user_data",
        "nonce",
    }
    assert document["nonce"] is None


def test_verify_document_returns_the_leaf_and_root() -> None:
    verified = verify_document(PRODUCTION.data, now=PRODUCTION.at)
    assert verified.root.name == "aws-nitro-enclaves-root-g1"
    assert verified.leaf.not_valid_after_utc == PRODUCTION.leaf_not_after
    assert verified.document.module_id == PRODUCTION.module_id


def test_tagged_real_document_verifies() -> None:
    assert verify(b"\xd2" + PRODUCTION.data, {}, now=PRODUCTION.at).debug is False


def test_expired_one_hour_after_the_leaf(real: RealDocument) -> None:
    with pytest.raises(CertificateExpired, match=r"leaf certificate .* expired at") as info:
        verify(real.data, {}, now=real.leaf_not_after + timedelta(hours=1))
    assert info.value.type == "certificate-expired"


def test_valid_until_the_leaf_expires(real: RealDocument) -> None:
    verify(real.data, {}, now=real.leaf_not_after)


def test_not_yet_valid_before_the_leaf(real: RealDocument) -> None:
    leaf_not_before = verify_document(real.data, now=real.at).leaf.not_valid_before_utc
    with pytest.raises(CertificateExpired, match="not valid before"):
        verify(real.data, {}, now=leaf_not_before - timedelta(seconds=1))


def test_collateral_is_refused() -> None:
    with pytest.raises(UnsupportedEvidence, match="takes no collateral; received crl"):
        verify(PRODUCTION.data, {"crl": b""}, now=PRODUCTION.at)


def test_naive_instant_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(PRODUCTION.data, {}, now=PRODUCTION.at.replace(tzinfo=None))


# --- Single-byte flips in the real documents ------------------------------------------------


def _flip(data: bytes, position: int) -> bytes:
    flipped = bytearray(data)
    flipped[position] ^= 0x01
    return bytes(flipped)


def _error(real: RealDocument, position: int) -> EvidenceError:
    with pytest.raises(EvidenceError) as info:
        verify(_flip(real.data, position), {}, now=real.at)
    return info.value


def _certificates(real: RealDocument) -> list[tuple[str, int, int]]:
    """(role, start, end) of every certificate inside the document bytes."""
    document = parse_signed_document(real.data).document
    spans = []
    for i, der in enumerate((document.certificate, *document.cabundle)):
        start = real.data.index(der)
        spans.append(("certificate" if i == 0 else f"cabundle[{i - 1}]", start, start + len(der)))
    return spans


def _payload_span(real: RealDocument) -> tuple[int, int]:
    payload = parse_signed_document(real.data).envelope.payload
    start = real.data.index(payload)
    return start, start + len(payload)


def test_every_signature_byte_flip_is_signature_invalid(real: RealDocument) -> None:
    for position in range(len(real.data) - 96, len(real.data)):
        assert isinstance(_error(real, position), SignatureInvalid), position


def test_payload_value_flips_are_signature_invalid(real: RealDocument) -> None:
    signed = parse_signed_document(real.data)
    module_id = real.data.index(signed.document.module_id.encode())
    pcr2 = real.data.index(signed.document.pcrs[2])
    timestamp = real.data.index(signed.document.timestamp.to_bytes(8, "big"))
    for position in (module_id + 5, pcr2 + 47, timestamp + 7):
        error = _error(real, position)
        assert isinstance(error, SignatureInvalid), (position, error)


def test_payload_structure_flips_are_malformed(real: RealDocument) -> None:
    start, _ = _payload_span(real)
    key = real.data.index(b"module_id")
    for position in (start, key + 1):  # the map head; a key name ("mndule_id")
        assert isinstance(_error(real, position), MalformedEvidence), position


@IGNORE_NAME_WARNINGS
def test_payload_flips_outside_certificates(real: RealDocument) -> None:
    start, end = _payload_span(real)
    inside = [(a, b) for _, a, b in _certificates(real)]
    for position in range(start, end, 7):
        if any(a <= position < b for a, b in inside):
            continue
        assert isinstance(_error(real, position), SignatureInvalid | MalformedEvidence), position


def test_certificate_signature_flips_are_chain_invalid(real: RealDocument) -> None:
    """The last byte of each certificate lies in its signature's s: the link breaks."""
    for role, _, end in _certificates(real):
        error = _error(real, end - 1)
        assert isinstance(error, ChainInvalid), (role, error)


@IGNORE_NAME_WARNINGS
def test_certificate_flips_anywhere(real: RealDocument) -> None:
    for role, start, end in _certificates(real):
        for position in range(start, end, 5):
            error = _error(real, position)
            allowed = ChainInvalid | SignatureInvalid | MalformedEvidence
            assert isinstance(error, allowed), (role, position, error)


@IGNORE_NAME_WARNINGS
def test_a_name_attribute_of_the_wrong_type_is_malformed() -> None:
    # Byte 987 ^ 0x10 turns a name attribute's string into a BIT STRING, which pyca only
    # refuses (TypeError) when the name is first read: the loader reads it at load.
    data = bytearray(PRODUCTION.data)
    data[987] ^= 0x10
    with pytest.raises(MalformedEvidence, match=r"is not a usable DER X\.509 certificate"):
        verify(bytes(data), {}, now=PRODUCTION.at)


@IGNORE_NAME_WARNINGS
def test_every_certificate_byte_flip_is_refused() -> None:
    """Every byte of every certificate, XOR 0x01 and 0x10: the certificates lie inside the
    signed payload, so a flip that still parses and chains breaks the COSE signature."""
    for _, start, end in _certificates(PRODUCTION):
        for _, _, flipped in flips(PRODUCTION.data[start:end]):
            data = PRODUCTION.data[:start] + flipped + PRODUCTION.data[end:]
            with pytest.raises((MalformedEvidence, ChainInvalid, SignatureInvalid)):
                verify(data, {}, now=PRODUCTION.at)


@IGNORE_NAME_WARNINGS
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.sampled_from(REAL_DOCUMENTS),
    index=st.integers(0, 4),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_edited_certificates_are_refused_with_our_errors(
    document: RealDocument, index: int, edits: list[tuple[int, int]]
) -> None:
    spans = _certificates(document)  # the leaf and four cabundle entries
    _, start, end = spans[index % len(spans)]
    data = bytearray(document.data)
    for position, value in edits:
        data[start + position % (end - start)] = value
    if bytes(data) == document.data:
        return
    with pytest.raises((MalformedEvidence, ChainInvalid, SignatureInvalid)):
        verify(bytes(data), {}, now=document.at)


def test_envelope_head_flips_are_malformed(real: RealDocument) -> None:
    start, _ = _payload_span(real)
    for position in range(start):  # array head, protected header, unprotected map, payload head
        error = _error(real, position)
        assert isinstance(error, MalformedEvidence), (position, error)


@IGNORE_NAME_WARNINGS
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.sampled_from(REAL_DOCUMENTS),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_mutated_documents_are_always_rejected_with_our_errors(
    document: RealDocument, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(document.data)
    for position, value in edits:
        data[position % len(data)] = value
    if bytes(data) == document.data:
        return
    with pytest.raises(EvidenceError):
        verify(bytes(data), {}, now=document.at)
