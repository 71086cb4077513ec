from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.jcs import _plain, _text, canonical_text, canonicalize


def test_member_order_and_separators() -> None:
    assert canonicalize({"tee-pubkey": {"n": "x", "e": "AQAB", "kty": "RSA"}, "nonce": "q"}) == (
        b'{"nonce":"q","tee-pubkey":{"e":"AQAB","kty":"RSA","n":"x"}}'
    )


def test_utf16_ordering_differs_from_code_points() -> None:
    # RFC 8785 §3.2.3 example: U+10000 (surrogates D800 DC00) sorts before U+FB33.
    assert canonicalize({"\ufb33": 1, "\U00010000": 2}) == '{"\U00010000":2,"\ufb33":1}'.encode()


def test_string_escapes_follow_rfc8785() -> None:
    assert canonicalize('\u0001\n"\\\u20ac') == b'"\\u0001\\n\\"\\\\\xe2\x82\xac"'


@pytest.mark.parametrize("bad", [1.5, {1: "a"}, b"bytes", object()])
def test_refuses_what_it_cannot_canonicalize(bad: object) -> None:
    with pytest.raises(TypeError):
        canonicalize(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_parses_back_and_is_stable(value: object) -> None:
    encoded = canonicalize(value)
    assert json.loads(encoded) == value
    assert canonicalize(json.loads(encoded)) == encoded


@given(json_values)
def test_fast_path_writes_what_the_general_path_writes(value: object) -> None:
    # canonical_text takes the json-module fast path for plain values with ASCII keys; the
    # general path (_text) is the reference implementation of RFC 8785.
    assert canonical_text(value) == _text(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: (
            st.lists(children, max_size=4).map(tuple)
            | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), children)
        ),
        max_leaves=20,
    )
)
def test_fast_path_covers_tuples_big_integers_and_ascii_keys(value: object) -> None:
    assert _plain(value)
    assert canonical_text(value) == _text(value)


def test_values_the_fast_path_leaves_to_the_general_path() -> None:
    assert not _plain({"\ufb33": 1})
    assert not _plain({1: "a"})
    assert not _plain([1.5])
    with pytest.raises(TypeError):
        canonical_text({"a": [1.5]})


@given(json_values)
def test_canonicalize_is_the_utf8_of_canonical_text(value: object) -> None:
    assert canonicalize(value) == canonical_text(value).encode("utf-8")
