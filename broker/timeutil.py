"""Instants: always timezone-aware UTC, parsed from ISO 8601 or unix seconds, and written by
:func:`iso`, the one formatter of the broker (records, answers, claims, messages, logs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


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


@overload
def iso(value: datetime, *, zulu: bool = False, timespec: str = "auto") -> str: ...
@overload
def iso(value: None, *, zulu: bool = False, timespec: str = "auto") -> None: ...
def iso(value: datetime | None, *, zulu: bool = False, timespec: str = "auto") -> str | None:
    """``value`` as ISO 8601 text (an RFC 3339 timestamp for the aware instants the broker
    holds), microseconds when it has them; None for None.

    The offset is written as Python writes it, ``+00:00`` for UTC: the form of audit
    records (whose chained hashes cover the text), answers and stored documents. ``zulu``
    writes ``Z`` for it instead (RFC 3339 §5.6 allows both): the form of claims, verifier
    messages and log timestamps, as Intel's and AWS's documents write their times.
    ``timespec`` is :meth:`datetime.isoformat`'s (``"seconds"`` drops the fraction).
    """
    if value is None:
        return None
    text = value.isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text


def iso_basic(value: datetime) -> str:
    """``value`` (UTC) in ISO 8601 basic format to the second, ``20240101T120000Z``: the
    request time of AWS Signature Version 4 (``X-Amz-Date``)."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
