"""JSON on the release path: orjson, and the standard library for what orjson refuses.

orjson writes the same compact JSON as ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` several times faster; it refuses integers beyond 64 bits and lone
surrogates, which then go through the json module (a lone surrogate as its ``\\u`` escape).
With ``sort_keys`` both order members by code point.

Reading, orjson gives ``json.loads``'s value for RFC 8259 UTF-8 JSON, several times faster,
with two exceptions: it turns integers beyond 64 bits into floats, and like the json module
it keeps the last of duplicate members. The broker refuses duplicate members (RFC 8259 §4
leaves their meaning to the parser, and two parsers of one request could read two different
requests: ``{"tee":"tdx","tee":"snp"}``), so :func:`loads` reads exactly what
:func:`strict_loads` reads, the json module with a hook that raises :class:`DuplicateMember`.
It hands the json module every document orjson refuses (NaN and Infinity, lone surrogates, a
byte order mark, other encodings, malformed text), every document in which orjson found a
float, and every document it cannot show free of duplicates at a glance (:func:`_unique`),
and the json module's value or error stands (tests/unit/test_fastjson.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON of ``value``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(
            value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, which a JSON string may carry as an escape (RFC 8259 §8.2) and
        # :func:`loads` reads, but UTF-8 cannot: written back as that escape.
        return json.dumps(
            value, ensure_ascii=True, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False
        ).encode("ascii")


class DuplicateMember(ValueError):
    """A JSON object names one member twice; ``name`` is that member's name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"duplicate member {name[:64]!r}")
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return document


def strict_loads(data: bytes | bytearray | str) -> Any:
    """``json.loads(data)``, except that an object naming a member twice raises
    :class:`DuplicateMember` (a ``ValueError``) instead of keeping the last value."""
    return json.loads(data, object_pairs_hook=_unique_members)


def loads(data: bytes | bytearray | str) -> Any:
    """:func:`strict_loads`: the same value, or the same error, with one difference: nesting.
    The json module's depth is bounded by the interpreter's recursion limit (less what the
    caller's stack already uses: a ``RecursionError``), orjson's by 1024 levels (deeper is a
    ``JSONDecodeError``, then the json module decides). A document 993 to 1024 levels deep
    is therefore read here where the json module may refuse it; every caller checks the
    types of the members it uses, so depth changes nothing downstream."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return strict_loads(data)
    if _holds_float(value) or not _unique(value, data):
        return strict_loads(data)
    return value


def _unique(value: Any, data: bytes | bytearray | str) -> bool:
    """Whether ``data``, which orjson read as ``value``, certainly names no member twice;
    False leaves the answer to :func:`strict_loads`. Two sufficient tests, cheapest first:

    1. orjson writes ``value`` in as many bytes as ``data``. Its output is never longer than
       the text it read, member by member (no whitespace; escapes only where JSON requires
       them; integers in their shortest form; floats never come here), and a duplicate's
       dropped member would make it shorter by its 5 bytes at least. Every compact client
       (httpx, orjson, the broker's own guest) passes here for about 1 µs per 10 KB.
    2. ``data`` holds no backslash, hence no escape: every string is its two quotes, and no
       quote is inside one, so ``data`` holds twice as many quotes as it has names and string
       values; a dropped duplicate takes at least its name's two quotes away from ``value``.
       About 1 ns a byte (documents with whitespace, such as ``json.dumps``' default).
    """
    text = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if len(orjson.dumps(value)) == len(text):
            return True
    except orjson.JSONEncodeError:
        pass  # nested deeper than orjson writes (255 levels): the second test decides
    if b"\\" in text:
        return False
    return text.count(b'"') == 2 * _strings(value)


def _strings(value: Any) -> int:
    """How many strings (member names and string values) a parsed document holds."""
    count = 0
    pending = [value]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is str:
            count += 1
        elif kind is dict:
            count += len(node)
            pending.extend(node.values())
        elif kind is list:
            pending.extend(node)
    return count


def loads_sorted(data: bytes) -> Any:
    """Exactly :func:`strict_loads`, faster than :func:`loads` for what ``dumps(...,
    sort_keys=True)`` wrote (the payload of a JWS this broker signed).

    When orjson writes its value back as the very same bytes, that value is what the json
    module reads: an integer beyond 64 bits would come back as a float's text, a duplicate
    member or an escape orjson does not write would change the text, and a float written
    in orjson's shortest round-trip form parses back to the same double. Otherwise
    :func:`loads` decides.
    """
    try:
        value = orjson.loads(data)
        if orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == data:
            return value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass  # refused, or nested deeper than orjson writes: loads decides
    return loads(data)


def _holds_float(value: Any) -> bool:
    """Whether a parsed document holds a float anywhere (iterative: orjson reads documents
    nested deeper than Python's recursion limit)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is not dict and kind is not list:
        return False
    pending = [value]
    while pending:
        node = pending.pop()
        for item in node.values() if type(node) is dict else node:
            kind = type(item)
            if kind is float:
                return True
            if kind is dict or kind is list:
                pending.append(item)
    return False
