"""Challenge nonces that the broker checks without having stored them.

``POST /v1/challenge`` must cost no database write: it is unauthenticated, and a row per call
would let anyone fill the table and would cost every release a statement. So a nonce carries
what the broker needs to judge it later, authenticated by a MAC under a key only the broker
holds (derived from the HSM at start, the same in every worker and replica:
``hsm/noncekey.py``). Layout, 32 bytes, standard base64 on the wire (docs/api.md):

====== ===== ============================================================================
offset bytes field
====== ===== ============================================================================
0      1     format and key version, :data:`VERSION` (a new format or key gets a new value)
1      4     expiry, Unix seconds, unsigned big-endian (good until 2106)
5      11    random, from ``secrets``
16     16    ``HMAC-SHA256(K, LABEL || bytes 0..15 || tee name)``, truncated to 128 bits
====== ===== ============================================================================

Why this shape:

* 32 bytes as before, so the guest API, the REPORT_DATA binding and Nitro's ``nonce`` field
  do not change.
* The MAC covers the tee name, so a nonce issued for one tee is refused for another. One MAC
  cannot tell "issued for another tee" from "not issued here" or "altered": the refusal
  says all three. ``LABEL`` separates this use of the key from any other; the tee name is
  the one variable-length input and comes last, so the input is unambiguous.
* 128 bits of MAC: a forger's chance is 2^-128 per try, and each try costs a request.
  The MAC output is unpredictable without the key, so a guest cannot make evidence for a
  nonce before it is issued; the 88 random bits make two nonces for the same tee and second
  distinct (a collision would only make the second guest's attest a replay, never a release).
* Replay protection stays in the database: attest inserts the consumed nonce in the same
  statement as its audit record (``broker/store/challenges.py``); a second insert of the
  same nonce finds it there. A row is kept until at least an hour after the nonce's expiry.

Checks, in order: length, version, MAC (constant time, before anything else in the nonce
is believed), expiry by the broker's clock ``now``, and an expiry no later than
``now + challenge_ttl_seconds`` + :data:`MAX_CLOCK_SKEW`, which no replica with a sane clock
could have issued. Clocks: a replica whose clock runs behind the issuer's sees a nonce live
that much longer (within the allowance) or refuses it (beyond); one running ahead sees it
expire early. Replicas are expected to keep their clocks within :data:`MAX_CLOCK_SKEW` (NTP).

A refusal up to and including the MAC is :class:`~broker.errors.NonceUnrecognised`: nothing
in the request is known to come from this broker, so it is audited in aggregate, not one
record each (``broker/release/unauthenticated.py``). From a MAC that verifies on, the nonce
is this broker's, and every refusal (expired, too far ahead, replayed) is audited alone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from broker.errors import InternalError, NonceExpired, NonceUnknown, NonceUnrecognised
from broker.redact import SecretBytes
from broker.timeutil import iso

NONCE_BYTES = 32
VERSION = 1
_EXPIRY = slice(1, 5)
_RANDOM_BYTES = 11
_SIGNED = slice(0, 16)  # version, expiry, random: what the MAC covers with the tee name
_MAC = slice(16, 32)
LABEL = b"keybroker challenge nonce v1\x00"
#: How far a replica's clock may run behind the clock of the replica that issued a nonce.
MAX_CLOCK_SKEW = timedelta(seconds=10)
_MAX_EXPIRY = (1 << 32) - 1


def decode(text: str) -> bytes:
    """The nonce bytes of the string a guest sent (standard base64, 32 bytes)."""
    try:
        nonce = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NonceUnrecognised("nonce is not standard base64", "nonce-malformed") from None
    if len(nonce) != NONCE_BYTES:
        raise NonceUnrecognised(
            f"nonce is {len(nonce)} bytes, not {NONCE_BYTES}", "nonce-malformed"
        )
    return nonce


class Nonces:
    """Issues and checks challenge nonces for one broker key and lifetime."""

    __slots__ = ("_key", "ttl")

    def __init__(self, key: SecretBytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl = timedelta(seconds=ttl_seconds)

    def __repr__(self) -> str:
        return f"Nonces(key=***, ttl={self.ttl.total_seconds():g} s)"

    def _mac(self, signed: bytes, tee: str) -> bytes:
        message = LABEL + signed + tee.encode("utf-8")
        return hmac.digest(self._key.reveal(), message, "sha256")[:16]

    def issue(self, tee: str, now: datetime) -> tuple[bytes, datetime]:
        """A new nonce for ``tee`` and its expiry: ``now`` + the lifetime, in whole seconds
        (rounded down, so a nonce never lives longer than ``challenge_ttl_seconds``)."""
        expiry = int(now.timestamp()) + int(self.ttl.total_seconds())
        if not 0 <= expiry <= _MAX_EXPIRY:
            raise InternalError(f"nonce expiry {expiry} does not fit 32 bits")
        signed = bytes([VERSION]) + expiry.to_bytes(4, "big") + secrets.token_bytes(_RANDOM_BYTES)
        return signed + self._mac(signed, tee), datetime.fromtimestamp(expiry, UTC)

    def check(self, nonce: bytes, tee: str, now: datetime) -> datetime:
        """The expiry of ``nonce`` when this broker issued it for ``tee`` and it is live at
        ``now``; raises :class:`NonceUnknown` or :class:`NonceExpired` otherwise. Whether it
        was used already is the database's to say, when it is consumed."""
        if len(nonce) != NONCE_BYTES:
            raise NonceUnrecognised(
                f"nonce is {len(nonce)} bytes, not {NONCE_BYTES}", "nonce-malformed"
            )
        if nonce[0] != VERSION:
            raise NonceUnrecognised(
                f"nonce version {nonce[0]} != {VERSION}: not a nonce this broker issues",
                "nonce-malformed",
            )
        if not hmac.compare_digest(self._mac(nonce[_SIGNED], tee), nonce[_MAC]):
            raise NonceUnrecognised(
                f"nonce was not issued by this broker for tee '{tee}' (its MAC does not "
                "verify: issued for another tee, by another broker, or altered)",
                "nonce-mac",
            )
        expires_at = datetime.fromtimestamp(int.from_bytes(nonce[_EXPIRY], "big"), UTC)
        if expires_at <= now:
            raise NonceExpired(f"nonce expired at {iso(expires_at)}")
        latest = now + self.ttl + MAX_CLOCK_SKEW
        if expires_at > latest:
            raise NonceUnknown(
                f"nonce expiry {iso(expires_at)} is after {iso(latest)} "
                f"(now + challenge_ttl_seconds {self.ttl.total_seconds():g} + clock skew "
                f"{MAX_CLOCK_SKEW.total_seconds():g} s): not a nonce this broker issues"
            )
        return expires_at
