"""Base64 in the two alphabets the wire format uses, read strictly."""

from __future__ import annotations

import base64
import binascii


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str, what: str) -> bytes:
    """The bytes of unpadded base64url ``text``; ``ValueError`` naming ``what`` otherwise, and
    for a text whose re-encoding differs (stray bits in the last character, padding,
    whitespace), so that one value has one spelling."""
    if not text.isascii():
        raise ValueError(f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64url") from None
    if b64url(data) != text:
        raise ValueError(f"{what} is not base64url")
    return data


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as the broker's JSON members carry bytes."""
    return base64.b64encode(data).decode("ascii")


def from_b64(text: str, what: str) -> bytes:
    """The bytes of standard padded base64 ``text``; ``ValueError`` naming ``what`` otherwise."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not base64") from None
    if b64(data) != text:
        raise ValueError(f"{what} is not base64")
    return data
