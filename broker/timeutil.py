"""Instants: always timezone-aware UTC, parsed from ISO 8601 or unix seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """``2023-07-01T01:00:00Z``, ``2023-07-01T01:00:00+02:00`` or ``1688173200`` -> UTC.

    A naive ISO time is refused: an instant without a zone is ambiguous, and verification
    outcomes depend on it.
    """
    text = text.strip()
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(text), UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 instant or unix seconds: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"instant {text!r} has no time zone; add Z or an offset")
    return value.astimezone(UTC)


def from_unix_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
