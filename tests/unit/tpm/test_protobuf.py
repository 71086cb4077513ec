"""The protobuf wire reader: the real attestations round trip, damaged wire data is
malformed, unknown fields are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import MalformedEvidence
from broker.evidence.tpm import protobuf

from .vectors import NO_NONCE, NONCE9009


@pytest.mark.parametrize("path", [NONCE9009, NO_NONCE], ids=lambda p: p.name)
def test_the_real_attestations_round_trip(path: Path) -> None:
    data = path.read_bytes()
    fields = protobuf.fields(data, "test")
    assert protobuf.encode(fields) == data
    assert [number for number, _, _ in fields] == [1, 2, 2, 2, 3, 6]


_FIELDS = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 2**29 - 1), st.just(0), st.integers(0, 2**64 - 1)),
        st.tuples(st.integers(1, 2**29 - 1), st.just(1), st.integers(0, 2**64 - 1)),
        st.tuples(st.integers(1, 2**29 - 1), st.just(2), st.binary(max_size=40)),
        st.tuples(st.integers(1, 2**29 - 1), st.just(5), st.integers(0, 2**32 - 1)),
    ),
    max_size=8,
)


@given(fields=_FIELDS)
def test_any_message_round_trips(fields: list[tuple[int, int, int | bytes]]) -> None:
    assert protobuf.fields(protobuf.encode(fields), "test") == fields


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\x08", "test: varint runs past the end at offset 1"),
        (b"\x08" + b"\xff" * 9 + b"\x02", "test: varint longer than 64 bits at offset 11"),
        (b"\x12\x05ab", "test: field 2 of 5 bytes runs past the end"),
        (b"\x0b", "test: field 1 has wire type 3"),
        (b"\x00\x00", "test: field number 0 at offset 1"),
        (b"\x09\x00", "test: field 1 runs past the end"),
    ],
)
def test_damaged_wire_data_is_malformed(data: bytes, detail: str) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        protobuf.fields(data, "test")
    assert refused.value.detail == detail


def test_a_field_of_the_wrong_wire_type_is_malformed() -> None:
    fields = protobuf.fields(b"\x08\x01\x12\x01x", "test")
    with pytest.raises(MalformedEvidence, match="test: field 1 is not length-delimited"):
        protobuf.all_bytes(fields, 1, "test")
    with pytest.raises(MalformedEvidence, match="test: field 2 is not a varint"):
        protobuf.last_varint(fields, 2, "test")
    assert protobuf.last_varint(fields, 1, "test") == 1
    assert protobuf.last_bytes(fields, 9, "test") is None
