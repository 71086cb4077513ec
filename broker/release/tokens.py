"""Attestation-result tokens: what a successful attest proves, signed by the broker's HSM key.

Payload (JWT, RFC 7519): ``iss``, ``iat``, ``exp``, ``jti``; ``tee``; ``claims`` (the lossless
:meth:`Claims.to_json`); ``cnf.jwk`` (RFC 7800) the tee public key every release is wrapped
to; ``evidence_sha256``. A token is short-lived (``token_ttl_seconds``) and may serve several
releases until it expires, on any broker replica that shares the signing key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from broker import jose
from broker.errors import TokenInvalid
from broker.evidence.claims import Claims
from hsm.pubkey import RsaPublicKey, from_jwk

ISSUER = "keybroker"
CLOCK_SKEW = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class AttestationResult:
    token_id: str
    claims: Claims
    tee_jwk: dict[str, Any]
    tee_key: RsaPublicKey
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
    stamp = now.timestamp()
    if stamp > expires + CLOCK_SKEW.total_seconds():
        raise TokenInvalid("token expired")
    if stamp < issued - CLOCK_SKEW.total_seconds():
        raise TokenInvalid("token is not valid yet")
    try:
        claims = Claims.from_json(body["claims"])
        jwk = body["cnf"]["jwk"]
        key = from_jwk(jwk)
        result = AttestationResult(
            token_id=str(body["jti"]),
            claims=claims,
            tee_jwk=dict(jwk),
            tee_key=key,
            issued_at=datetime.fromtimestamp(issued, now.tzinfo),
            expires_at=datetime.fromtimestamp(expires, now.tzinfo),
            evidence_sha256=str(body["evidence_sha256"]),
        )
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid("token payload is incomplete") from None
    return result
