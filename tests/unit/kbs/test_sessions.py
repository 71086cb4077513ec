"""KBS cookie sessions: per process, bounded, expiring; ids as Trustee's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from broker.evidence.claims import Tee
from broker.release.sessions import KbsSession, KbsSessions

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _session(seconds: int = 300) -> KbsSession:
    return KbsSession(Tee.SNP, "bm9uY2U=", "sha384", NOW + timedelta(seconds=seconds))


def test_ids_are_uuid4_in_32_lower_case_hex_digits_never_reused() -> None:
    sessions = KbsSessions(16)
    ids = {sessions.open(_session()) for _ in range(8)}
    assert len(ids) == 8
    for session_id in ids:
        assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", session_id)


def test_a_session_lives_until_it_expires() -> None:
    sessions = KbsSessions(4)
    session = _session(10)
    session_id = sessions.open(session)
    assert sessions.get(session_id, NOW) is session
    assert sessions.get(session_id, NOW + timedelta(seconds=10)) is None
    assert len(sessions) == 0  # forgotten once seen expired
    assert sessions.get("", NOW) is None
    assert sessions.get("not-a-session", NOW) is None


def test_an_attested_session_lives_as_long_as_its_token() -> None:
    sessions = KbsSessions(4)
    session = _session(10)
    session_id = sessions.open(session)
    sessions.attested(session_id, session, "token", NOW + timedelta(seconds=300))
    found = sessions.get(session_id, NOW + timedelta(seconds=100))
    assert found is not None
    assert found.token == "token"
    assert "token" not in repr(found)  # the token is a bearer credential
    assert "attested=True" in repr(found)


def test_the_least_recently_used_session_leaves_first() -> None:
    sessions = KbsSessions(2)
    first = sessions.open(_session())
    second = sessions.open(_session())
    assert sessions.get(first, NOW) is not None  # first is now the most recently used
    third = sessions.open(_session())
    assert sessions.capacity == 2
    assert [sessions.get(i, NOW) is not None for i in (first, second, third)] == [
        True,
        False,
        True,
    ]
