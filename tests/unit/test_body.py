"""Request-body helpers: base64 members, and the memory of recurring collateral texts."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.api.body import DecodedTexts, decode_base64
from broker.errors import BadRequest

texts = st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()) | st.text(
    alphabet="ABCab+/-_=\n xyz09", max_size=40
)


def _outcome(decode: Callable[[str, str], bytes], text: str) -> object:
    try:
        return decode(text, "collateral.x")
    except BadRequest as exc:
        return ("refused", exc.detail)


@given(st.lists(texts, max_size=8))
def test_the_memory_answers_what_decoding_answers(sequence: list[str]) -> None:
    memo = DecodedTexts(capacity=3)
    for text in sequence + sequence:  # the second time round, from memory where it can
        assert _outcome(memo.decode, text) == _outcome(decode_base64, text)


def test_it_is_bounded_and_forgets_the_least_recently_used() -> None:
    memo = DecodedTexts(capacity=2, max_chars=8)
    first, second, third = "AAAA", "AQID", "BAUG"
    for text in (first, second, first, third):  # first was used again, so second goes
        memo.decode(text, "x")
    assert list(memo._decoded) == [first, third]
    memo.decode("AAAAAAAAAAAA", "x")  # longer than max_chars: decoded, not kept
    assert list(memo._decoded) == [first, third]


def test_refused_texts_are_not_remembered() -> None:
    memo = DecodedTexts()
    with pytest.raises(BadRequest, match=r"member 'collateral\.vcek' is not base64"):
        memo.decode("!!!!", "collateral.vcek")
    assert not memo._decoded
