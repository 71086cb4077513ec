"""Strict request bodies: JSON objects of bounded size, typed members, nothing unexpected."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeVar

from broker import fastjson
from broker.errors import BadRequest

T = TypeVar("T")


class BodySource(Protocol):
    """A request with a body: Starlette's ``Request`` or the guest path's ``LeanRequest``."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self) -> AsyncIterator[bytes]: ...


async def json_object(request: BodySource, allowed: set[str], max_bytes: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest(f"request body larger than {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > max_bytes:
            raise BadRequest(f"request body larger than {max_bytes} bytes")
    try:
        document = fastjson.loads(raw)  # json.loads's value or error, by orjson
    except (ValueError, RecursionError):  # bad JSON, not UTF-8, or absurdly deep nesting
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise BadRequest(f"unknown members: {', '.join(unknown)}")
    return document


def member(document: Mapping[str, Any], name: str, kind: type[T], required: bool = True) -> T:
    value = document.get(name)
    if value is None:
        if required:
            raise BadRequest(f"member '{name}' is required")
        return value  # type: ignore[return-value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"member '{name}' must be {kind.__name__}")
    return value


def base64_member(document: Mapping[str, Any], name: str, required: bool = True) -> bytes | None:
    """Standard or URL-safe base64, padded or not (guests differ; both are unambiguous)."""
    text = member(document, name, str, required)
    if text is None:
        return None
    return decode_base64(text, name)


def decode_base64(text: str, name: str) -> bytes:
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"member '{name}' is not base64") from None
