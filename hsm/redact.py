"""Values that must never be printed: PINs, tokens, passwords, key material.

Their ``repr`` and ``str`` are fixed placeholders, so a secret that reaches a log line, an
exception message or a settings dump shows as ``***``. Comparison is constant-time. hsm/
holds PINs and a derived key and imports nothing of broker/, so the one definition is here;
the broker names it ``broker.redact``.
"""

from __future__ import annotations

import hmac


class _Redacted:
    """What :class:`Secret` and :class:`SecretBytes` share: the placeholder, the comparison."""

    __slots__ = ()

    def _bytes(self) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _Redacted):
            return NotImplemented
        return hmac.compare_digest(self._bytes(), other._bytes())

    def __hash__(self) -> int:
        return hash(type(self))


class Secret(_Redacted):
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value, for the one call that needs it (C_Login, a DSN)."""
        return self._value

    def _bytes(self) -> bytes:
        return self._value.encode()

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretBytes(_Redacted):
    """Key material held in memory (a derived MAC key)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The plain bytes, for the one computation that needs them (an HMAC)."""
        return self._value

    def _bytes(self) -> bytes:
        return self._value
