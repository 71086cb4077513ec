"""JSON output on the release path: orjson, and the standard library for what orjson refuses.

orjson writes the same compact JSON as ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` several times faster; it refuses integers beyond 64 bits, which then
go through the json module. With ``sort_keys`` both order members by code point.
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
