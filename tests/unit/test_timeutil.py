"""Instants are written by one formatter, ``broker.timeutil.iso``, in the forms the broker
has always written (audit records are chained over their text: a changed form would break
every chain written before)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from broker.timeutil import iso, parse_instant

AT = datetime(2025, 6, 1, 12, 30, 5, tzinfo=UTC)


def test_records_and_answers_write_the_offset() -> None:
    assert iso(AT) == "2025-06-01T12:30:05+00:00"
    assert iso(AT.replace(microsecond=250)) == "2025-06-01T12:30:05.000250+00:00"


def test_claims_messages_and_logs_write_z() -> None:
    assert iso(AT, zulu=True) == "2025-06-01T12:30:05Z"
    assert iso(AT.replace(microsecond=250), zulu=True) == "2025-06-01T12:30:05.000250Z"


def test_another_offset_is_written_as_it_is() -> None:
    plus_two = AT.astimezone(timezone(timedelta(hours=2)))
    assert iso(plus_two) == iso(plus_two, zulu=True) == "2025-06-01T14:30:05+02:00"


def test_seconds_drop_the_fraction() -> None:
    at = AT.replace(microsecond=999_999)
    assert iso(at, zulu=True, timespec="seconds") == "2025-06-01T12:30:05Z"


def test_none_is_none() -> None:
    assert iso(None) is None
    assert iso(None, zulu=True) is None


@pytest.mark.parametrize("zulu", [False, True])
def test_what_is_written_reads_back(zulu: bool) -> None:
    at = AT.replace(microsecond=123456)
    assert parse_instant(iso(at, zulu=zulu)) == at
