from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import fastjson
from broker.fastjson import DuplicateMember, dumps, loads, loads_sorted, strict_loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(values, st.booleans())
def test_writes_what_the_json_module_writes(value: object, sort_keys: bool) -> None:
    # Integers beyond 64 bits take the json-module fallback; everything else is orjson's.
    expected = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"))
    assert dumps(value, sort_keys=sort_keys) == expected.encode("utf-8")


def test_integers_beyond_64_bits_are_written_exactly() -> None:
    assert dumps({"b": 2**70, "a": -(2**70)}, sort_keys=True) == (
        b'{"a":-1180591620717411303424,"b":1180591620717411303424}'
    )


@given(st.dictionaries(st.text(), st.text(alphabet=st.characters(categories=["Cs", "L"]))))
def test_text_that_utf8_cannot_carry_is_written_as_escapes_that_read_back(
    value: dict[str, str],
) -> None:
    # A lone surrogate arrives as a JSON escape (loads accepts it) and may be echoed in an
    # error's detail: it is written back as that escape, never an exception.
    written = dumps(value)
    assert loads(written) == value
    if any("\ud800" <= c <= "\udfff" for text in value.values() for c in text):
        assert written.isascii()


# --- loads: exactly json.loads, duplicate members refused -------------------------------------


def _typed(value: object) -> object:
    """A form in which 1, 1.0 and True differ, and -0.0, nan and inf compare by their text."""
    if isinstance(value, dict):
        return ("dict", [(key, _typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"a", b"\\u", b"d800", b"0", b"-", b"1", b"."]
_TOKENS += [b"e", b"E+", b"99999999999999999999", b"NaN", b"true", b"null", b" ", b"\xc3", b"\x00"]


def _outcome(parse: Callable[[Any], object], data: bytes) -> object:
    try:
        return _typed(parse(data))
    except DuplicateMember as exc:
        return ("duplicate", exc.name)
    except (ValueError, RecursionError):
        return "refused"  # what body.json_object and jose.verify catch


documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(2**63 - 3, 2**64 + 3)
    | st.integers(-(2**63) - 3, -(2**63) + 3)
    | st.floats()
    | st.text(alphabet=st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


# What dumps can write (no surrogates, no NaN or infinities).
_safe_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


def _texts(value: object) -> st.SearchStrategy[bytes]:
    ascii_text = json.dumps(value)
    raw_text = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return st.sampled_from(
        [ascii_text.encode(), raw_text, b"\xef\xbb\xbf" + raw_text, ascii_text.encode("utf-16")]
    )


@given(documents.flatmap(_texts))
def test_loads_is_json_loads(data: bytes) -> None:
    assert _outcome(loads, data) == _outcome(strict_loads, data)


@given(st.binary(max_size=40) | st.lists(st.sampled_from(_TOKENS), max_size=12).map(b"".join))
def test_loads_is_json_loads_on_arbitrary_bytes(data: bytes) -> None:
    assert _outcome(loads, data) == _outcome(strict_loads, data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"n": 123456789012345678901234567890}',  # orjson would give a float
        b"[18446744073709551616, -9223372036854775809]",
        b'{"a": 1E400}',
        b'"\\ud800"',
        b"[NaN]",
        b'{"a": 1, "a": 2}',
        b"[" * 100_000,
    ],
)
def test_loads_edge_cases(data: bytes) -> None:
    assert _outcome(loads, data) == _outcome(strict_loads, data)


def test_nesting_is_read_to_orjsons_depth_and_refused_beyond() -> None:
    """The one documented difference from json.loads: depth (see ``loads``)."""
    value = loads(b"[" * 1000 + b"]" * 1000)
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    assert (value, depth) == ([], 999)
    with pytest.raises((ValueError, RecursionError)):
        loads(b"[" * 1100 + b"]" * 1100)


def _written(value: object) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [dumps(value, sort_keys=True), dumps(value), json.dumps(value).encode("utf-8")]
    )


@given(documents.flatmap(_texts) | _safe_documents.flatmap(_written))
def test_loads_sorted_is_json_loads(data: bytes) -> None:
    assert _outcome(loads_sorted, data) == _outcome(strict_loads, data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"n":123456789012345678901234567890}',
        b'{"a":1,"a":2}',
        b'{"b":1,"a":2}',
        b'{"a":1e5}',
        b'{"a":"\\u00e9"}',
        b"[" * 300 + b"]" * 300,  # deeper than orjson writes
    ],
)
def test_loads_sorted_edge_cases(data: bytes) -> None:
    assert _outcome(loads_sorted, data) == _outcome(strict_loads, data)


def test_loads_sorted_takes_what_dumps_wrote_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(data: bytes) -> object:
        raise AssertionError("went the long way")

    payload = {"b": [1, -2.5, "é\n", None, 2**63], "a": {"x": True, "y": 0.1}}
    monkeypatch.setattr(fastjson, "loads", unexpected)
    assert loads_sorted(dumps(payload, sort_keys=True)) == payload


# --- duplicate members: refused on every path --------------------------------------------------

# Trees whose objects are lists of (name, value) pairs, so that names may repeat.
_names = st.sampled_from(["a", "tee", "", "é", 'q"', "\\", "\u2028"]) | st.text(max_size=3)
_pair_trees = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: ("list", items))
        | st.lists(st.tuples(_names, children), max_size=4).map(lambda pairs: ("object", pairs))
    ),
    max_leaves=12,
)


def _write(tree: object, gap: str, ensure_ascii: bool) -> str:
    """JSON text of a pair tree with ``gap`` around every structural character."""
    if isinstance(tree, tuple) and tree[0] == "list":
        return "[" + gap + f"{gap},{gap}".join(_write(x, gap, ensure_ascii) for x in tree[1]) + "]"
    if isinstance(tree, tuple) and tree[0] == "object":
        members = (
            json.dumps(name, ensure_ascii=ensure_ascii)
            + f"{gap}:{gap}"
            + _write(v, gap, ensure_ascii)
            for name, v in tree[1]
        )
        return "{" + gap + f"{gap},{gap}".join(members) + gap + "}"
    return json.dumps(tree, ensure_ascii=ensure_ascii)


@given(_pair_trees, st.sampled_from(["", " ", "\n\t"]), st.booleans())
def test_loads_refuses_duplicates_as_the_json_module_with_a_hook(
    tree: object, gap: str, ensure_ascii: bool
) -> None:
    data = _write(tree, gap, ensure_ascii).encode("utf-8")
    assert _outcome(loads, data) == _outcome(strict_loads, data)
    assert _outcome(loads_sorted, data) == _outcome(strict_loads, data)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"tee":"tdx","tee":"snp"}', "tee"),  # compact: orjson writes it shorter
        (b'{"tee": "tdx", "tee": "snp"}', "tee"),  # spaced: four quotes too many
        (b'{"a":{"n":"1","n":"2"}}', "n"),  # nested
        (b'[{"x":1},{"y":"\\"","y":2}]', "y"),  # an escape sends it to the json module
        (b'{"a":"x","a":"' + b"y" * 10 + b'"   }', "a"),  # whitespace cannot make up for it
        (b'{"a":1.5,"a":1.5}', "a"),  # a float sends it to the json module
        (b'{"\\u0061":1,"a":2}', "a"),  # the same name spelled twice
    ],
)
def test_duplicate_members_are_refused_by_name(data: bytes, name: str) -> None:
    for parse in (loads, loads_sorted, strict_loads):
        with pytest.raises(DuplicateMember) as refused:
            parse(data)
        assert refused.value.name == name


def test_the_json_module_alone_keeps_the_last_duplicate() -> None:
    """What strict_loads is for: without the hook, one request reads as another."""
    assert json.loads(b'{"tee":"tdx","tee":"snp"}') == {"tee": "snp"}
