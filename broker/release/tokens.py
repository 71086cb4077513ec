"""Attestation-result tokens: what a successful attest proves, signed by the broker's HSM key.

Payload (JWT, RFC 7519): ``iss``, ``iat``, ``exp``, ``jti``; ``tee``; ``claims`` (the lossless
:meth:`Claims.to_json`); ``cnf.jwk`` (RFC 7800) the tee public key every release is wrapped
to; ``evidence_sha256``. A token is short-lived (``token_ttl_seconds``) and may serve several
releases until it expires, on any broker replica that shares the signing key.

The tee key is an RSA key (the native release's HSM envelope) or, for tokens a KBS
attestation issued, an EC P-256/P-521 key (or RSA for ``RSA-OAEP-256``) that the KBS resource
answer is encrypted to (``hsm/jwe.py``): :data:`TeeKey`. Everything a release needs is in the
token, so a KBS guest presenting it as a Bearer token is served by any worker or replica.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from broker import jose
from broker.errors import PublicKeyInvalid, TokenInvalid
from broker.evidence.claims import Claims
from broker.hsmcalls import kbs_recipient, tee_key_from_jwk
from broker.lru import Lru
from hsm.jwe import Recipient
from hsm.pubkey import RsaPublicKey

#: A token's tee key: native (RSA, wrapped to inside the HSM) or a KBS JWE recipient.
TeeKey = RsaPublicKey | Recipient

ISSUER = "keybroker"
CLOCK_SKEW = timedelta(seconds=30)
_LAST_INSTANT = 253402300799
"""9999-12-31T23:59:59Z, the last instant a ``datetime`` holds."""


@dataclass(frozen=True, slots=True)
class AttestationResult:
    token_id: str
    claims: Claims
    tee_jwk: dict[str, Any]
    tee_key: TeeKey
    issued_at: datetime
    expires_at: datetime
    evidence_sha256: str


def payload(
    claims: Claims, tee_jwk: dict[str, Any], evidence_sha256: str, now: datetime, ttl_seconds: int
) -> dict[str, Any]:
    issued = int(now.timestamp())
    return {
        "iss": ISSUER,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_hex(16),
        "tee": claims.tee.value,
        "claims": claims.to_json(),
        "cnf": {"jwk": tee_jwk},
        "evidence_sha256": evidence_sha256,
    }


def read(token: str, public_key: ec.EllipticCurvePublicKey, now: datetime) -> AttestationResult:
    """Verify ``token`` at ``now`` and return what it attests; ``TokenInvalid`` otherwise."""
    body = jose.verify(token, jose.TYP_ATTESTATION_RESULT, public_key)
    if body.get("iss") != ISSUER:
        raise TokenInvalid("token issuer is not keybroker")
    issued, expires = body.get("iat"), body.get("exp")
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise TokenInvalid("token lacks iat/exp")
    if not 0 <= issued <= expires <= _LAST_INSTANT:  # else no datetime holds them
        raise TokenInvalid("token iat/exp are not instants in order")
    _check_time(issued, expires, now)
    if not isinstance(body.get("claims"), dict):
        raise TokenInvalid("token payload is incomplete")
    try:
        return result_of(body, Claims.from_json(body["claims"]), tee_key(body["cnf"]["jwk"]), now)
    except (KeyError, TypeError, ValueError, PublicKeyInvalid):
        raise TokenInvalid("token payload is incomplete") from None


def tee_key(jwk: Any) -> TeeKey:
    """The tee key of a token's ``cnf.jwk``: RSA as the native API takes it, EC as a KBS
    ``tee-pubkey`` (``PublicKeyInvalid`` otherwise)."""
    if isinstance(jwk, dict) and jwk.get("kty") == "EC":
        return kbs_recipient(jwk)
    return tee_key_from_jwk(jwk)


def _check_time(issued: float, expires: float, now: datetime) -> None:
    stamp = now.timestamp()
    if stamp > expires + CLOCK_SKEW.total_seconds():
        raise TokenInvalid("token expired")
    if stamp < issued - CLOCK_SKEW.total_seconds():
        raise TokenInvalid("token is not valid yet")


def result_of(
    payload_: dict[str, Any], claims: Claims, key: TeeKey, now: datetime
) -> AttestationResult:
    """What a token with ``payload_`` attests, as :func:`read` would return it."""
    return AttestationResult(
        token_id=str(payload_["jti"]),
        claims=claims,
        tee_jwk=dict(payload_["cnf"]["jwk"]),
        tee_key=key,
        issued_at=datetime.fromtimestamp(payload_["iat"], now.tzinfo),
        expires_at=datetime.fromtimestamp(payload_["exp"], now.tzinfo),
        evidence_sha256=str(payload_["evidence_sha256"]),
    )


class IssuedTokens:
    """Tokens this process issued, by their exact text, so that a release presenting one
    skips re-verifying a signature this process made itself over that very payload.

    Only a byte-identical token hits; its validity period is still checked at every use,
    and anything else (tokens from another worker or replica, altered tokens) goes through
    :func:`read`. Bounded, least recently used first out: a guest releases its keys right
    after it attests, so a few seconds' worth of tokens is what pays.

    Entries are found by the token's last :data:`KEY_CHARS` characters (its signature):
    hashing the whole token, several kilobytes presented as a new string with every
    release, cost more than the rest of the lookup. A hit is then compared in full.
    """

    KEY_CHARS = 86
    """The text of an ES256 signature (64 bytes, unpadded base64url)."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey, capacity: int = 1024) -> None:
        self._key = public_key
        self._results: Lru[str, tuple[str, AttestationResult]] = Lru(capacity)

    def remember(self, token: str, result: AttestationResult) -> None:
        """``token``, which this process signed with the key given at construction."""
        self._results.put(token[-self.KEY_CHARS :], (token, result))

    def read(
        self, token: str, public_key: ec.EllipticCurvePublicKey, now: datetime
    ) -> AttestationResult:
        """As :func:`read`, from memory when this process issued ``token`` with
        ``public_key``'s private key (verification under any other key is :func:`read`'s)."""
        known = self._results.get(token[-self.KEY_CHARS :])
        if known is None or known[0] != token or public_key is not self._key:
            return read(token, public_key, now)
        result = known[1]
        _check_time(result.issued_at.timestamp(), result.expires_at.timestamp(), now)
        return result
