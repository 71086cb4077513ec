"""The broker's signing key and the ES256 compact JWS it signs releases with (RFC 7515).

The broker signs each release envelope with its HSM-held P-256 key (header ``alg`` ES256,
``typ`` kb-release+jws, ``kid`` = the key's RFC 7638 thumbprint). A guest that pinned that
key (its thumbprint given at bind time, or the whole JWK recorded then) accepts an envelope
only if that key signed it, so whoever terminates TLS cannot hand it another envelope.
This module is the guest's own verifier; it shares no code with the broker's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keybroker_guest.encoding import from_b64url
from keybroker_guest.errors import Untrusted
from keybroker_guest.teekey import jwk_thumbprint

TYP_RELEASE = "kb-release+jws"
_COORDINATE_BYTES = 32  # P-256 (RFC 7518 §6.2.1.2: the full size of the field element)


@dataclass(frozen=True)
class BrokerKey:
    """A broker's public signing key: its JWK members, the key, its RFC 7638 thumbprint."""

    jwk: dict[str, str]
    public_key: ec.EllipticCurvePublicKey
    thumbprint: str

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> BrokerKey:
        """``Untrusted`` unless ``jwk`` is a P-256 public key (other members ignored)."""
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise Untrusted("the broker's signing key is not an EC P-256 JWK")
        x, y = jwk.get("x"), jwk.get("y")
        if not isinstance(x, str) or not isinstance(y, str):
            raise Untrusted("the broker's signing key lacks x or y")
        try:
            xb, yb = from_b64url(x, "x"), from_b64url(y, "y")
        except ValueError as exc:
            raise Untrusted(f"the broker's signing key: {exc}") from None
        if len(xb) != _COORDINATE_BYTES or len(yb) != _COORDINATE_BYTES:
            raise Untrusted("the broker's signing key coordinates are not 32 bytes")
        try:
            public_key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()
            ).public_key()
        except ValueError:
            raise Untrusted("the broker's signing key is not a point on P-256") from None
        members = {"crv": "P-256", "kty": "EC", "x": x, "y": y}
        return cls(members, public_key, jwk_thumbprint(members))


def _object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(from_b64url(segment, what), object_pairs_hook=_refuse_duplicates)
    except ValueError as exc:  # base64, UTF-8, JSON or a member named twice
        raise Untrusted(f"envelope {what} is unreadable: {exc}") from None
    if not isinstance(value, dict):
        raise Untrusted(f"envelope {what} is not a JSON object")
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("a member is named twice")
    return dict(pairs)


def verify(compact: str, typ: str, key: BrokerKey) -> dict[str, Any]:
    """The payload of ``compact`` if ``key`` signed it with ES256 under ``typ``; else
    ``Untrusted`` saying why."""
    parts = compact.split(".")
    if len(parts) != 3 or not all(parts) or not compact.isascii():
        raise Untrusted("envelope is not a compact JWS")
    header = _object(parts[0], "header")
    if header.get("alg") != "ES256" or header.get("typ") != typ:
        raise Untrusted(f"envelope header must say alg ES256 and typ {typ}")
    if header.get("kid") != key.thumbprint:
        raise Untrusted(
            f"envelope was signed by broker key {str(header.get('kid'))[:64]}, "
            f"not the pinned {key.thumbprint}"
        )
    try:
        signature = from_b64url(parts[2], "signature")
    except ValueError:
        raise Untrusted("envelope signature is not base64url") from None
    if len(signature) != 2 * _COORDINATE_BYTES:  # r || s (RFC 7518 §3.4)
        raise Untrusted("envelope signature is not 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.public_key.verify(
            der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise Untrusted("envelope signature does not verify with the pinned broker key") from None
    return _object(parts[1], "payload")
