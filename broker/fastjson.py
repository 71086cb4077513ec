"""JSON on the release path: orjson, and the standard library for what orjson refuses.

orjson writes the same compact JSON as ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` several times faster; it refuses integers beyond 64 bits, which then
go through the json module. With ``sort_keys`` both order members by code point.

Reading, orjson gives ``json.loads``'s value for RFC 8259 UTF-8 JSON, several times faster,
with one exception: it turns integers beyond 64 bits into floats. :func:`loads` therefore
hands the json module every document orjson refuses (NaN and Infinity, lone surrogates, a
byte order mark, other encodings, malformed text) and every document in which orjson found
a float, and the json module's value or error stands (tests/unit/test_fastjson.py).
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
        return json.dumps(
            value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads(data)``: the same value, or the same error, with one difference: nesting.
    The json module's depth is bounded by the interpreter's recursion limit (less what the
    caller's stack already uses: a ``RecursionError``), orjson's by 1024 levels (deeper is a
    ``JSONDecodeError``, then ``json.loads`` decides). A document 993 to 1024 levels deep is
    therefore read here where the json module may refuse it; every caller checks the types
    of the members it uses, so depth changes nothing downstream."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    if _holds_float(value):
        return json.loads(data)
    return value


def loads_sorted(data: bytes) -> Any:
    """Exactly ``json.loads(data)``, faster than :func:`loads` for what ``dumps(...,
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
