"""Parsing: the COSE_Sign1 envelope and the CBOR payload, strict types and sizes, round trips."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import MalformedEvidence
from broker.evidence.nitro.abi import (
    PAYLOAD_KEYS,
    parse_attestation_document,
    parse_cose_sign1,
    parse_signed_document,
)
from tests.unit.nitro.vectors import PRODUCTION, REAL_DOCUMENTS, RealDocument

PROTECTED_ES384 = cbor2.dumps({1: -35})
SIGNATURE = bytes(range(96))


def _payload(**changes: Any) -> dict[str, Any]:
    """The production document's payload as a dict, with ``changes`` applied (None deletes)."""
    payload: dict[str, Any] = cbor2.loads(parse_signed_document(PRODUCTION.data).envelope.payload)
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def _envelope(payload: bytes, protected: bytes = PROTECTED_ES384, **kw: Any) -> bytes:
    items = [protected, kw.get("unprotected", {}), payload, kw.get("signature", SIGNATURE)]
    return cbor2.dumps(items)


def _malformed(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_signed_document(data)


# --- Real documents ------------------------------------------------------------------------


def test_real_documents_parse(real: RealDocument) -> None:
    signed = parse_signed_document(real.data)
    document = signed.document
    assert not signed.envelope.tagged
    assert document.module_id == real.module_id
    assert document.digest == "SHA384"
    assert document.timestamp == int(real.timestamp.timestamp() * 1000)
    assert list(document.pcrs) == list(range(16))
    assert all(len(pcr) == 48 for pcr in document.pcrs.values())
    assert len(document.cabundle) == 4
    assert len(signed.envelope.signature) == 96


def test_envelope_round_trip_is_byte_exact(real: RealDocument) -> None:
    signed = parse_signed_document(real.data)
    assert signed.to_bytes() == real.data
    assert parse_cose_sign1(real.data).to_bytes() == real.data


def test_payload_round_trip_is_byte_exact_in_the_nsm_encoding(real: RealDocument) -> None:
    """The NSM's key order and nulls are reproduced, so the signed bytes come back exactly."""
    envelope = parse_cose_sign1(real.data)
    document = parse_attestation_document(envelope.payload)
    assert document.to_bytes() == envelope.payload
    assert parse_attestation_document(document.to_bytes()) == document


def test_payload_is_not_rfc8949_deterministic(real: RealDocument) -> None:
    """Why to_bytes does not sort keys: the NSM's order is not RFC 8949 §4.2 order."""
    payload = parse_cose_sign1(real.data).payload
    assert cbor2.dumps(cbor2.loads(payload), canonical=True) != payload


def test_tagged_envelope_parses_and_round_trips() -> None:
    tagged = b"\xd2" + PRODUCTION.data
    signed = parse_signed_document(tagged)
    assert signed.envelope.tagged
    assert signed.to_bytes() == tagged
    assert signed.document == parse_signed_document(PRODUCTION.data).document


def test_semantic_round_trip_of_other_key_orders_and_absent_optionals() -> None:
    """Keys in another order and absent optionals parse; to_bytes gives the NSM form."""
    reordered = dict(reversed(list(_payload(public_key=None, user_data=None).items())))
    document = parse_attestation_document(cbor2.dumps(reordered))
    assert document.public_key is None
    assert document.user_data is None
    nsm_form = document.to_bytes()
    assert nsm_form != cbor2.dumps(reordered)
    assert list(cbor2.loads(nsm_form)) == list(PAYLOAD_KEYS)
    assert parse_attestation_document(nsm_form) == document


def test_document_is_frozen_and_pcrs_read_only() -> None:
    document = parse_signed_document(PRODUCTION.data).document
    with pytest.raises(dataclasses.FrozenInstanceError):
        document.digest = "SHA256"  # type: ignore[misc]
    with pytest.raises(TypeError):
        document.pcrs[0] = b""  # type: ignore[index]


# --- Envelope errors -------------------------------------------------------------------------


def test_empty_and_oversized_documents() -> None:
    _malformed(b"", "empty")
    _malformed(b"\x00" * (64 * 1024 + 1), "at most 65536")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xd1" + PRODUCTION.data, r"tag head 0xd1"),  # tag 17 (COSE_Mac0)
        (b"\xd2\xd2" + PRODUCTION.data, r"tag head 0xd2"),  # tag 18 twice
        (b"\xd8\x12" + PRODUCTION.data, r"tag head 0xd8"),  # tag 18, non-shortest head
        (b"\xc0" + PRODUCTION.data, r"tag head 0xc0"),
    ],
)
def test_wrong_tag(data: bytes, match: str) -> None:
    _malformed(data, match)


def test_trailing_bytes_after_the_envelope() -> None:
    _malformed(PRODUCTION.data + b"\x00", "1 trailing bytes")


def test_truncated_envelope() -> None:
    _malformed(PRODUCTION.data[:-1], "not valid CBOR")


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ({"a": 1}, "4-element array, found a map"),
        ([PROTECTED_ES384, {}, b"p"], "found 3-element array"),
        ([PROTECTED_ES384, {}, b"p", SIGNATURE, b""], "found 5-element array"),
        (["a1013822", {}, b"p", SIGNATURE], "protected header must be a byte string"),
        ([PROTECTED_ES384, [], b"p", SIGNATURE], "unprotected header must be a map"),
        ([PROTECTED_ES384, {4: b"kid"}, b"p", SIGNATURE], "unprotected header must be empty"),
        ([PROTECTED_ES384, {}, None, SIGNATURE], "payload .* must be a byte string, found null"),
        ([PROTECTED_ES384, {}, b"p", "sig"], "signature must be a byte string, found text"),
        ([PROTECTED_ES384, {}, b"p", SIGNATURE[:64]], "signature is 64 bytes != 96"),
        ([b"", {}, b"p", SIGNATURE], "protected header is not valid CBOR"),
        ([cbor2.dumps([1, -35]), {}, b"p", SIGNATURE], "protected header must be a map"),
        ([cbor2.dumps({4: b"k"}), {}, b"p", SIGNATURE], r"lacks alg \(label 1\)"),
        ([cbor2.dumps({1: -7}), {}, b"p", SIGNATURE], r"alg -7 != -35 \(ES384\)"),
        ([cbor2.dumps({1: -36}), {}, b"p", SIGNATURE], r"alg -36 != -35"),
        ([cbor2.dumps({1: "ES384"}), {}, b"p", SIGNATURE], r"alg 'ES384' != -35"),
        ([cbor2.dumps({1: -35, 2: [1]}), {}, b"p", SIGNATURE], r"labels 2 besides alg"),
        ([b"\xa2\x01\x38\x22\x01\x38\x22", {}, b"p", SIGNATURE], "Duplicate map key"),
        ([PROTECTED_ES384 + b"\x00", {}, b"p", SIGNATURE], "protected header: 1 trailing"),
    ],
)
def test_envelope_structure(items: Any, match: str) -> None:
    _malformed(cbor2.dumps(items), match)


def test_envelope_must_use_shortest_heads() -> None:
    # The signature's length 96 written with a two-byte argument (0x59 0x0060) instead of 0x58.
    data = PRODUCTION.data[:-98] + b"\x59\x00\x60" + PRODUCTION.data[-96:]
    _malformed(data, r"preferred serialization")


def test_envelope_must_not_use_indefinite_lengths() -> None:
    items = cbor2.dumps([PROTECTED_ES384, {}, b"p", SIGNATURE], indefinite_containers=True)
    _malformed(items, "indefinite")


# --- Payload errors --------------------------------------------------------------------------

CERT = b"\x30" * 100


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"module_id": b"i-0"}, "module_id must be text, found a byte string"),
        ({"module_id": ""}, "module_id is empty"),
        ({"digest": 384}, "digest must be text, found an integer"),
        ({"digest": ""}, "digest is empty"),
        ({"timestamp": "1665651482136"}, "timestamp must be an unsigned integer, found text"),
        ({"timestamp": 1.5}, "found a float"),
        ({"timestamp": True}, "found a boolean"),
        ({"timestamp": 0}, "timestamp 0 is outside"),
        ({"timestamp": -1}, "timestamp -1 is outside"),
        ({"pcrs": [b"\x00" * 48]}, "pcrs must be a map, found an array"),
        ({"pcrs": {}}, "pcrs has 0 entries"),
        ({"pcrs": dict.fromkeys(range(33), b"\x00" * 48)}, "pcrs has 33 entries"),
        ({"pcrs": {32: b"\x00" * 48}}, "pcrs index 32 is not an integer in 0..31"),
        ({"pcrs": {-1: b"\x00" * 48}}, "pcrs index -1"),
        ({"pcrs": {"0": b"\x00" * 48}}, "pcrs index '0'"),
        ({"pcrs": {0: "00" * 48}}, r"pcrs\[0\] must be a byte string, found text"),
        ({"pcrs": {0: b"\x00" * 47}}, r"pcrs\[0\] is 47 bytes; 32, 48 or 64 allowed"),
        ({"pcrs": {0: b"\x00" * 65}}, r"pcrs\[0\] is 65 bytes"),
        ({"certificate": "cert"}, "certificate must be a byte string, found text"),
        ({"certificate": b""}, r"certificate is 0 bytes; 1..1024 allowed"),
        ({"certificate": b"\x30" * 1025}, r"certificate is 1025 bytes"),
        ({"cabundle": CERT}, "cabundle must be an array, found a byte string"),
        ({"cabundle": []}, "cabundle is empty"),
        ({"cabundle": [CERT, b"\x30" * 1025]}, r"cabundle\[1\] is 1025 bytes"),
        ({"cabundle": [CERT, 7]}, r"cabundle\[1\] must be a byte string, found an integer"),
        ({"public_key": "key"}, "public_key must be a byte string, found text"),
        ({"public_key": b"k" * 1025}, "public_key is 1025 bytes; at most 1024"),
        ({"user_data": b"u" * 1025}, "user_data is 1025 bytes"),
        ({"user_data": ["u"]}, "user_data must be a byte string, found an array"),
        ({"nonce": b"n" * 1025}, "nonce is 1025 bytes"),
        ({"nonce": 5}, "nonce must be a byte string, found an integer"),
        ({"module_id": None}, "lacks module_id"),
        ({"pcrs": None, "cabundle": None}, "lacks pcrs, cabundle"),
        ({"extra": b""}, "keys outside the CDDL: 'extra'"),
    ],
)
def test_payload_fields(changes: dict[str, Any], match: str) -> None:
    _malformed(_envelope(cbor2.dumps(_payload(**changes))), match)


def test_payload_integer_key() -> None:
    payload = _payload()
    payload[7] = b""
    _malformed(_envelope(cbor2.dumps(payload)), "keys outside the CDDL: 7")


def test_payload_sizes_at_the_limits_parse() -> None:
    changes = {
        "pcrs": {i: b"\x00" * (32, 48, 64)[i % 3] for i in range(32)},
        "certificate": b"\x30" * 1024,
        "cabundle": [b"\x30"],
        "public_key": b"",
        "user_data": b"u" * 1024,
        "nonce": b"n" * 1024,
        "timestamp": 2**64 - 1,
    }
    document = parse_attestation_document(cbor2.dumps(_payload(**changes)))
    assert len(document.pcrs) == 32
    assert document.public_key == b""
    assert document.timestamp == 2**64 - 1


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (cbor2.dumps([1, 2]), "must be a map, found an array"),
        (cbor2.dumps(_payload()) + b"\xf6", "1 trailing bytes"),
        (cbor2.dumps(_payload())[:-1], "not valid CBOR"),
        (b"\xaa" + cbor2.dumps(_payload())[1:] + cbor2.dumps("nonce") + b"\xf6", "Duplicate"),
        (cbor2.dumps(_payload(), indefinite_containers=True), "indefinite"),
        (cbor2.dumps(_payload(timestamp=cbor2.CBORTag(2, b"\x01"))), "CBOR tag 2 is not allowed"),
        (cbor2.dumps(_payload(module_id=cbor2.CBORTag(0, "x"))), "CBOR tag 0 is not allowed"),
        (cbor2.dumps(_payload(nonce=cbor2.CBORTag(24, b"\x01"))), "CBOR tag 24 is not allowed"),
        (b"\xd9\xd9\xf7" + cbor2.dumps(_payload()), "CBOR tag 55799 is not allowed"),
        (cbor2.dumps(_payload(pcrs={0: [[[[b""]]]]})), "depth"),
        (cbor2.dumps(_payload()).replace(b"\x69module_id", b"\x69module\xffd"), "not valid CBOR"),
    ],
)
def test_payload_encoding(payload: bytes, match: str) -> None:
    _malformed(_envelope(payload), match)


# --- Property: nothing but MalformedEvidence, whatever the bytes -----------------------------

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_signed_document(data)


@_FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_never_escape(data: bytes) -> None:
    _parse_or_malformed(data)
    _parse_or_malformed(b"\xd2" + data)
    _parse_or_malformed(_envelope(data))


@_FUZZ
@given(
    document=st.sampled_from(REAL_DOCUMENTS),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10**6) | st.none(),
)
def test_mutated_real_documents_never_escape(
    document: RealDocument, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(document.data)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _parse_or_malformed(bytes(data))
    payload = parse_cose_sign1(document.data).payload
    mutated = bytearray(payload)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    _parse_or_malformed(_envelope(bytes(mutated)))


_cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=80),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-2, 40), children, max_size=4)
    ),
    max_leaves=12,
)


@_FUZZ
@given(st.dictionaries(st.sampled_from(PAYLOAD_KEYS), _cbor_values, max_size=9))
def test_wrongly_typed_payloads_are_malformed(fields: dict[str, Any]) -> None:
    payload = _payload() | fields
    with contextlib.suppress(MalformedEvidence):
        parse_attestation_document(cbor2.dumps(payload))
