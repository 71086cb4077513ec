"""RFC 8785 JSON Canonicalization Scheme for the values keybroker hashes.

Used for the evidence binding (``{"nonce", "tee-pubkey"}``, as in Trustee's KBS protocol) and
for audit records. Supported values: objects with string keys, arrays, strings, booleans,
null and integers. Floats are refused: their RFC 8785 form needs the ECMAScript number
serialiser, and nothing keybroker hashes is fractional. Integers are written exactly; RFC 8785
would round those beyond 2**53 through a double, so hashed documents keep large values
(raw TCB words, serial numbers) as hex strings instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from broker.fastjson import dumps

_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def canonicalize(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``."""
    if _plain(value):
        return dumps(value, sort_keys=True)
    return _text(value).encode("utf-8")


def canonical_text(value: Any) -> str:
    if _plain(value):
        return _dump_plain(value)
    return _text(value)


# The fast path. For plain dicts with ASCII string keys, lists, tuples, strings, integers,
# booleans and null, RFC 8785 output is exactly compact JSON with sorted keys and no ASCII
# escaping (broker/fastjson.py): the same string escaping as json's encoder, which is what
# _text uses for strings, integers written exactly, and for ASCII keys code point order
# equals UTF-16 code unit order. Anything else (floats, other
# key types, non-ASCII keys, other mappings and sequences) takes the general path below,
# which sorts by UTF-16 and refuses what it cannot canonicalise.
def _dump_plain(value: Any) -> str:
    return dumps(value, sort_keys=True).decode("utf-8")


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """True when ``value`` is made only of what the fast path writes exactly (scalars are
    checked in line: a claim tree has many more leaves than containers)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) not in _SCALARS and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS or _plain(item) for item in value)
    return kind in _SCALARS


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        # RFC 8785 §3.2.2.2: escape only '"', '\\' and controls (\b \t \n \f \r, else \u00xx
        # lowercase); Python's encoder with ensure_ascii=False does exactly that.
        return _encode_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise TypeError("canonical JSON here carries no floats")
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object key {key!r} is not a string")
        # RFC 8785 §3.2.3: members sorted by their names as UTF-16 code units.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(f"{_encode_string(k)}:{_text(value[k])}" for k in keys) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ",".join(_text(item) for item in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")
