from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee, freeze, thaw
from broker.timeutil import parse_instant


def _claims() -> Claims:
    return Claims(
        tee=Tee.SNP,
        signer=Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek", "Milan"),
        debug=False,
        fields={"measurement": "ab" * 48, "reported_tcb": {"snp": 5}, "rtmr": ["00", "11"]},
        report_data=b"\x01" * 64,
        evidence_time=datetime(2024, 1, 1, tzinfo=UTC),
    )


def test_lookup_walks_mappings_and_tuples() -> None:
    claims = _claims()
    assert claims.lookup("reported_tcb.snp") == 5
    assert claims.lookup("rtmr.1") == "11"
    assert claims.lookup("signer.origin") == "silicon-vendor"
    assert claims.lookup("tee") == "snp"
    with pytest.raises(KeyError):
        claims.lookup("reported_tcb.fmc")
    with pytest.raises(KeyError):
        claims.lookup("rtmr.2")


def test_fields_are_read_only() -> None:
    claims = _claims()
    with pytest.raises(TypeError):
        claims.fields["measurement"] = "00"  # type: ignore[index]


def test_json_round_trip_is_lossless() -> None:
    claims = _claims()
    assert Claims.from_json(claims.to_json()) == claims


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-07-01T01:00:00Z", datetime(2023, 7, 1, 1, tzinfo=UTC)),
        ("2023-07-01T03:00:00+02:00", datetime(2023, 7, 1, 1, tzinfo=UTC)),
        ("1688173200", datetime(2023, 7, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_instant(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", ["2023-07-01T01:00:00", "yesterday", ""])
def test_parse_instant_rejects_ambiguous_or_bad(text: str) -> None:
    with pytest.raises(ValueError, match=r"instant|unix"):
        parse_instant(text)


def test_json_forms_are_the_thawed_fields_made_once() -> None:
    claims = _claims()
    reference = thaw(claims.fields)
    document = claims.document()
    assert document == {
        "tee": "snp",
        "signer": claims.signer.to_json(),
        "debug": False,
        **reference,
    }
    assert list(document)[:3] == ["tee", "signer", "debug"]
    assert claims.to_json()["fields"] == reference
    assert claims.plain_fields() is claims.plain_fields() is claims.to_json()["fields"]
    assert document is not claims.document()  # the top level is the caller's own
    # The memo is not part of the value, and a replaced object starts without one.
    assert claims == Claims.from_json(claims.to_json())
    assert replace(claims, fields={"measurement": "00"}).document()["measurement"] == "00"


def _reference_thaw(value: object) -> object:
    """The plain recursive inverse of freeze, as thaw was first written."""
    if isinstance(value, Mapping):
        return {k: _reference_thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_reference_thaw(v) for v in value]
    return value


claim_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=5)
        | st.dictionaries(st.text(max_size=6), children, max_size=5).map(OrderedDict)
    ),
    max_leaves=25,
)


@given(claim_trees)
def test_thaw_inverts_freeze_as_the_reference_does(tree: object) -> None:
    frozen = freeze(tree)
    thawed = thaw(frozen)
    assert thawed == _reference_thaw(frozen)
    assert _types(thawed) == _types(_reference_thaw(frozen))  # dicts and lists, exactly
    assert freeze(thawed) == frozen


def _types(value: object) -> object:
    if isinstance(value, dict):
        return (type(value), [(k, _types(v)) for k, v in value.items()])
    if isinstance(value, list):
        return (type(value), [_types(v) for v in value])
    return type(value)


def test_thaw_copies_what_it_returns() -> None:
    inner = {"snp": 5}
    frozen = freeze({"reported_tcb": inner})
    thawed = thaw(frozen)
    thawed["reported_tcb"]["snp"] = 7
    assert frozen["reported_tcb"]["snp"] == 5
    assert thaw(MappingProxyType(OrderedDict(a=1))) == {"a": 1}
    assert type(thaw(MappingProxyType(OrderedDict(a=1)))) is dict
