"""Strict request bodies: JSON objects of bounded size, typed members, nothing unexpected."""

from __future__ import annotations

import binascii
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeVar

from broker import fastjson
from broker.api.numbers import is_ascii_digits
from broker.errors import BadRequest
from broker.lru import Lru

T = TypeVar("T")


class BodySource(Protocol):
    """A request with a body: Starlette's ``Request`` or the guest path's ``LeanRequest``."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self) -> AsyncIterator[bytes]: ...


async def bounded_body(request: BodySource, max_bytes: int) -> bytes:
    """The whole body, refused (``BadRequest``) once it is declared or found to be longer
    than ``max_bytes``: never more than that is held."""
    declared = request.headers.get("content-length")
    if declared is not None and is_ascii_digits(declared) and int(declared) > max_bytes:
        raise BadRequest(f"request body larger than {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > max_bytes:
            raise BadRequest(f"request body larger than {max_bytes} bytes")
    return bytes(raw)


async def json_object(request: BodySource, allowed: set[str], max_bytes: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if (
        content_type != "application/json"  # what nearly every client sends, as is
        and content_type.split(";")[0].strip().lower() != "application/json"
    ):
        raise BadRequest("Content-Type must be application/json")
    raw = await bounded_body(request, max_bytes)
    try:
        document = fastjson.loads(raw)  # json.loads's value or error, by orjson
    except fastjson.DuplicateMember as exc:  # RFC 8259 §4 leaves its meaning open: refused
        raise BadRequest(f"request body names member {exc.name[:64]!r} twice") from None
    except (ValueError, RecursionError):  # bad JSON, not UTF-8, or absurdly deep nesting
        raise BadRequest("request body is not valid JSON") from None
    if _ESCAPED_SURROGATE.search(raw) and _holds_lone_surrogate(document):
        # I-JSON (RFC 7493 §2.1) forbids them: such text has no UTF-8 form, so it could be
        # neither recorded, hashed nor echoed in an error message.
        raise BadRequest("request body holds a lone surrogate (\\uD800-\\uDFFF) escape")
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    if not allowed.issuperset(document):
        unknown = sorted(set(document) - allowed)
        raise BadRequest(f"unknown members: {', '.join(unknown)}")
    return document


#: Any \\uD800-\\uDFFF escape; raw UTF-8 cannot encode a surrogate, so only escapes make one.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(document: Any) -> bool:
    """Whether a string or member name of ``document`` holds a surrogate code point (an
    escaped pair decodes to one character, so only a lone one remains). Iterative."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def member(document: Mapping[str, Any], name: str, kind: type[T], required: bool = True) -> T:
    """``document[name]`` checked to be a ``kind``; null is the same as absent.

    JSON has one number type, and JSON Schema's ``integer`` is any number with no fractional
    part, so an integer member may be written ``5.0`` (the members read as integers are
    bounded far below 2^53, where every such float is exact)."""
    value = document.get(name)
    if value is None:
        if required:
            raise BadRequest(f"member '{name}' is required")
        return value  # type: ignore[return-value]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"member '{name}' must be {kind.__name__}")
    return value


def base64_member(document: Mapping[str, Any], name: str, required: bool = True) -> bytes | None:
    """:func:`decode_base64` of a member."""
    text = member(document, name, str, required)
    if text is None:
        return None
    return decode_base64(text, name)


def decode_base64(text: str, name: str) -> bytes:
    """Standard or URL-safe base64, padded or not (guests differ; both are unambiguous), and
    nothing else (RFC 4648 §3.3): no whitespace, and no padding but what completes the last
    group, so that the OpenAPI document's base64 pattern admits exactly what is read here.
    binascii's strict mode refuses padding before or inside the data; padding after a
    complete group it skips, so that is refused here."""
    data = text.rstrip("=")
    missing = -len(data) % 4
    if missing == 3 or len(text) - len(data) > missing:
        raise BadRequest(f"member '{name}' is not base64")
    cleaned = data.replace("-", "+").replace("_", "/") + "=" * missing
    try:
        return binascii.a2b_base64(cleaned.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):  # not base64; not ASCII (UnicodeEncodeError)
        raise BadRequest(f"member '{name}' is not base64") from None


class DecodedTexts:
    """:func:`decode_base64` with a memory of the texts it decoded, for texts that recur.

    A guest sends the same collateral with every attestation (its chip's VCEK and certificate
    chain, about 7 KB of base64): decoding it costs about 2 ns a character, finding it again
    a fifth of that (hashing the text), and a hit is the very result a decode would give.
    Bounded (least recently used out, texts of at most ``max_chars``). Only for public data:
    the memory keeps what it decoded.
    """

    def __init__(self, capacity: int = 64, max_chars: int = 32768) -> None:
        self.max_chars = max_chars
        self._decoded: Lru[str, bytes] = Lru(capacity)

    def decode(self, text: str, name: str) -> bytes:
        known = self._decoded.get(text)
        if known is not None:
            return known
        decoded = decode_base64(text, name)  # raises, and remembers nothing, when not base64
        if len(text) <= self.max_chars:
            self._decoded.put(text, decoded)
        return decoded
