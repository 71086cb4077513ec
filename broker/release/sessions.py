"""KBS (RCAR) sessions: what the ``kbs-session-id`` cookie stands for, per worker process.

A Confidential Containers guest speaks to a KBS in one cookie session: ``/auth`` opens it
(the tee and the challenge: nonce and selected hash), ``/attest`` proves it (the token it
earned), and ``/resource`` uses it. The state that matters lives elsewhere, as the native
API's does: the nonce is a keybroker nonce (``nonces.py``: MAC'd, with its expiry, consumed
once in PostgreSQL), and the token carries everything a release needs, so a guest that
presents it as ``Authorization: Bearer`` is served by any worker or replica. What this
module keeps is only the cookie's mapping to them.

So sessions are per process: bounded (least recently used out) and expiring (an
unattested session with its nonce, an attested one with its token). A request whose cookie
names a session this process does not hold (another worker or replica, a restart, an
eviction) gets 401, and the reference client answers a 401 from ``/resource`` by redoing
the whole handshake, as it does when a Trustee session times out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from broker.evidence.claims import Tee
from broker.lru import Lru
from broker.timeutil import iso


@dataclass(slots=True)
class KbsSession:
    tee: Tee
    nonce: str
    """The challenge nonce as issued (standard base64)."""
    hash_name: str
    """The binding hash the challenge selected."""
    expires_at: datetime
    token: str | None = None
    """The attestation token, once the session attested."""

    def __repr__(self) -> str:
        return (
            f"KbsSession(tee={self.tee.value}, hash={self.hash_name}, "
            f"expires_at={iso(self.expires_at)}, attested={self.token is not None})"
        )


class KbsSessions:
    """The sessions of one worker process, by cookie value."""

    def __init__(self, capacity: int) -> None:
        self._sessions: Lru[str, KbsSession] = Lru(capacity)

    @property
    def capacity(self) -> int:
        return self._sessions.capacity

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, session: KbsSession) -> str:
        """Hold ``session`` under a new id: a UUID v4 as 32 lower-case hex digits, as
        Trustee's (122 random bits: not guessable, and never reused)."""
        session_id = uuid.uuid4().hex
        self._sessions.put(session_id, session)
        return session_id

    def get(self, session_id: str, now: datetime) -> KbsSession | None:
        """The live session ``session_id`` names; None when this process holds none (an
        expired one is forgotten)."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= now:
            self._sessions.discard(session_id, session)
            return None
        return session

    def attested(
        self, session_id: str, session: KbsSession, token: str, expires_at: datetime
    ) -> None:
        """Record the token ``session`` earned; it now lives as long as the token."""
        session.token = token
        session.expires_at = expires_at
        self._sessions.put(session_id, session)
