"""Numbers in a request's text are written with the ASCII digits 0-9 only."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from broker.api.admin import _int_param
from broker.api.numbers import is_ascii_digits
from broker.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("10", True),
        ("0", True),
        ("", False),
        ("\u0661\u0660", False),  # ARABIC-INDIC ONE ZERO: int() reads 10
        ("\uff11", False),  # FULLWIDTH DIGIT ONE: int() reads 1
        ("\u00b2", False),  # SUPERSCRIPT TWO: isdigit() is true, int() refuses it
        (" 1", False),
        ("+1", False),
        ("1_0", False),
    ],
)
def test_only_ascii_digits_are_digits(text: str, digits: bool) -> None:
    assert is_ascii_digits(text) is digits


def _query(query: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "query_string": query, "headers": []})


def test_query_numbers_in_other_scripts_are_refused() -> None:
    assert _int_param(_query(b"limit=10"), "limit", 50) == 10
    assert _int_param(_query(b""), "limit", 50) == 50
    for raw in ("%D9%A1%D9%A0", "%C2%B2", "%EF%BC%91"):  # U+0661 U+0660, U+00B2, U+FF11 in UTF-8
        with pytest.raises(BadRequest) as refused:
            _int_param(_query(f"limit={raw}".encode()), "limit", 50)
        assert refused.value.detail == (
            "query parameter limit must be a non-negative integer (digits 0-9)"
        )
