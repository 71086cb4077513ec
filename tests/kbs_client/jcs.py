"""RFC 8785 (JSON Canonicalization Scheme) for the values a KBS binding hashes: objects,
arrays, strings, integers, booleans and null. Written from the RFC, independently of the
server's ``broker/jcs.py``."""

from __future__ import annotations

from typing import Any

# RFC 8785 §3.2.2.2: these five controls have short escapes; other controls are \u00xx with
# lower-case hex; '"' and '\' are escaped; everything else is written as is (UTF-8).
_SHORT = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code in _SHORT:
            out.append(_SHORT[code])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _utf16_units(name: str) -> list[int]:
    """RFC 8785 §3.2.3: members are sorted by their names as arrays of UTF-16 code units."""
    encoded = name.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise ValueError("integers beyond 2**53 have no exact I-JSON form")
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        names = sorted(value, key=_utf16_units)
        return "{" + ",".join(_string(n) + ":" + _value(value[n]) for n in names) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not canonicalised here")


def canonical(value: Any) -> bytes:
    return _value(value).encode("utf-8")
