from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.jcs import canonicalize


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
