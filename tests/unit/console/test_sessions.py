"""Console sessions sealed in their cookie (broker/admin/sessions.py): what opens and what
does not."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from broker.admin.sessions import MAX_COOKIE_CHARS, ConsoleSessions
from broker.redact import SecretBytes

NOW = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
TOKEN = "kb_0123456789abcdef_secret-part"


def _sessions(key: bytes = b"k" * 32) -> ConsoleSessions:
    return ConsoleSessions(SecretBytes(key), timedelta(hours=1))


def test_a_sealed_session_opens_with_its_token_and_csrf_until_it_expires() -> None:
    cookie, session = _sessions().seal(TOKEN, NOW)
    opened = _sessions().open(cookie, NOW + timedelta(minutes=59))
    assert opened is not None
    assert opened.token.reveal() == TOKEN
    assert opened.csrf == session.csrf
    assert opened.expires == NOW + timedelta(hours=1)
    assert _sessions().open(cookie, NOW + timedelta(hours=1)) is None


def test_the_cookie_does_not_show_the_token_and_each_login_differs() -> None:
    first, one = _sessions().seal(TOKEN, NOW)
    second, two = _sessions().seal(TOKEN, NOW)
    assert first != second
    assert one.csrf != two.csrf
    assert TOKEN.encode() not in base64.urlsafe_b64decode(first)
    assert TOKEN not in repr(one)


def test_a_session_sealed_under_another_key_does_not_open() -> None:
    cookie, _ = _sessions(b"o" * 32).seal(TOKEN, NOW)
    assert _sessions().open(cookie, NOW) is None


@pytest.mark.parametrize("position", [0, 11, 12, 40, -1])
def test_any_flipped_bit_is_refused(position: int) -> None:
    cookie, _ = _sessions().seal(TOKEN, NOW)
    sealed = bytearray(base64.urlsafe_b64decode(cookie))
    sealed[position] ^= 0x01
    assert _sessions().open(base64.urlsafe_b64encode(bytes(sealed)).decode(), NOW) is None


@pytest.mark.parametrize(
    "cookie", ["", "not base64 at all!", "AAAA", "é", "A" * (MAX_COOKIE_CHARS + 4)]
)
def test_junk_is_refused(cookie: str) -> None:
    assert _sessions().open(cookie, NOW) is None
