"""Console sessions: the admin token a browser logged in with, sealed in its cookie.

A session is the admin token, a CSRF token and an expiry, sealed with AES-256-GCM under a key
the HSM derives from its nonce key under a label of its own (``hsm/noncekey.py``), so every
worker and replica on the token opens every other's cookies and nothing is stored. The
browser holds only ciphertext: it can neither read the admin token nor change the expiry.
Each request opens the cookie and authenticates its token again
(:meth:`broker.admin.service.AdminService.authenticate`), so the console acts with exactly
the token's role, and a revoked or expired token ends the session at once.

Cookie: base64url(12-byte nonce || GCM ciphertext and tag) of the JSON
``{"t": token, "c": csrf, "e": expiry (unix seconds)}``, with :data:`AAD` as associated data.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.redact import Secret, SecretBytes

#: Binds a ciphertext to this use and format: a value sealed for anything else never opens.
AAD = b"keybroker console session v1"
_NONCE_BYTES = 12
#: Far above any sealed session (a token is under 100 characters): anything longer is
#: refused before it is decoded.
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Session:
    token: Secret
    """The admin token the browser logged in with (redacted in every repr)."""
    csrf: str
    """The synchronizer token every state-changing request must carry (docs/console.md)."""
    expires: datetime


class ConsoleSessions:
    def __init__(self, key: SecretBytes, lifetime: timedelta) -> None:
        self._aead = AESGCM(key.reveal())
        self.lifetime = lifetime

    def seal(self, token: str, now: datetime) -> tuple[str, Session]:
        """A new session for ``token`` from ``now``: its cookie value, and the session."""
        session = Session(Secret(token), secrets.token_urlsafe(32), now + self.lifetime)
        plain = json.dumps(
            {"t": token, "c": session.csrf, "e": int(session.expires.timestamp())},
            separators=(",", ":"),
        ).encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain, AAD)
        return base64.urlsafe_b64encode(sealed).decode("ascii"), session

    def open(self, cookie: str, now: datetime) -> Session | None:
        """The session ``cookie`` seals, or None: for a value this key did not seal, one
        altered in any bit, or one expired at ``now``."""
        if len(cookie) > MAX_COOKIE_CHARS:
            return None
        try:
            sealed = base64.urlsafe_b64decode(cookie.encode("ascii"))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            return None
        if len(sealed) <= _NONCE_BYTES:
            return None
        try:
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], AAD)
        except InvalidTag:
            return None
        content = json.loads(plain)  # sealed by us: well formed
        expires = datetime.fromtimestamp(content["e"], tz=now.tzinfo)
        if now >= expires:
            return None
        return Session(Secret(content["t"]), content["c"], expires)
