"""Request-body helpers: base64 members, and the memory of recurring collateral texts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.api.body import DecodedTexts, decode_base64, json_object, member
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
    assert memo._decoded.keys() == [first, third]
    memo.decode("AAAAAAAAAAAA", "x")  # longer than max_chars: decoded, not kept
    assert memo._decoded.keys() == [first, third]


def test_refused_texts_are_not_remembered() -> None:
    memo = DecodedTexts()
    with pytest.raises(BadRequest, match=r"member 'collateral\.vcek' is not base64"):
        memo.decode("!!!!", "collateral.vcek")
    assert not memo._decoded


class _Request:
    def __init__(
        self,
        body: bytes,
        content_type: str | None = "application/json",
        content_length: str | None = None,
    ) -> None:
        self.headers = {} if content_type is None else {"content-type": content_type}
        if content_length is not None:
            self.headers["content-length"] = content_length
        self.body = body

    async def stream(self) -> AsyncIterator[bytes]:
        yield self.body


def _read(body: bytes, content_type: str | None = "application/json") -> dict[str, object]:
    return asyncio.run(json_object(_Request(body, content_type), {"a", "b"}, 64))


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON", " application/json ; charset=utf-8"]
)
def test_json_content_types(content_type: str) -> None:
    assert _read(b'{"a": 1}', content_type) == {"a": 1}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx", ""])
def test_other_content_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(BadRequest, match="Content-Type must be application/json"):
        _read(b'{"a": 1}', content_type)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"z": 1, "a": 2, "c": 3}', "unknown members: c, z"),
        (b"[1]", "must be a JSON object"),
        (b'{"a": NaN, "b": 1', "not valid JSON"),
        (b'{"a": "' + b"x" * 64 + b'"}', "larger than 64 bytes"),
        # A lone surrogate has no UTF-8 form: echoed in a problem or hashed, it raised
        # UnicodeEncodeError (a 500).
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": ["x\\uDFFFy"]}', "lone surrogate"),
        (b'{"\\udc00": 1}', "lone surrogate"),
        (b'{"a": "\\ude00\\ud83d"}', "lone surrogate"),  # a pair in the wrong order
    ],
)
def test_refused_bodies(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _read(body)


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b'{"a":"tdx","a":"snp"}', "a"),
        (b'{"a": "tdx", "b": 1, "a": "snp"}', "a"),
        (b'{"a": {"kty": "RSA", "kty": "EC"}}', "kty"),
    ],
)
def test_a_member_named_twice_is_refused_by_name(body: bytes, name: str) -> None:
    with pytest.raises(BadRequest) as refused:
        _read(body)
    assert refused.value.detail == f"request body names member '{name}' twice"


@pytest.mark.parametrize("declared", ["\u00b2", "\u0661\u0660\u0660", "1e3", "-1"])
def test_a_content_length_that_is_not_ascii_digits_is_not_read_as_a_number(
    declared: str,
) -> None:
    # Not a number: the declared length is ignored and the body read within the limit.
    request = _Request(b'{"a": 1}', content_length=declared)
    assert asyncio.run(json_object(request, {"a"}, 64)) == {"a": 1}


@pytest.mark.parametrize(
    ("written", "read"), [(b"5", 5), (b"5.0", 5), (b"5e0", 5), (b"8192.00", 8192)]
)
def test_an_integer_member_may_be_written_as_a_number_with_no_fraction(
    written: bytes, read: int
) -> None:
    # JSON Schema's "integer" is any number without a fractional part (2020-12 §6.1.1):
    # what the OpenAPI document admits is accepted.
    document = asyncio.run(json_object(_Request(b'{"n": ' + written + b"}"), {"n"}, 64))
    value = member(document, "n", int)
    assert value == read
    assert type(value) is int


@pytest.mark.parametrize("written", [b"5.5", b"true", b'"5"', b"1e400", b"NaN"])
def test_anything_else_is_not_an_integer(written: bytes) -> None:
    document = asyncio.run(json_object(_Request(b'{"n": ' + written + b"}"), {"n"}, 64))
    with pytest.raises(BadRequest, match="member 'n' must be int"):
        member(document, "n", int)


@pytest.mark.parametrize("text", [" AAAA", "AAAA\n", "AA AA", "\tAAAA"])
def test_base64_with_whitespace_is_refused(text: str) -> None:
    # RFC 4648 §3.3; the OpenAPI document's base64 pattern admits no whitespace either.
    with pytest.raises(BadRequest, match="member 'secret' is not base64"):
        decode_base64(text, "secret")


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    assert _read(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
