"""Compact JWS with ES256, signed by the broker's HSM key (RFC 7515, RFC 7518 §3.4).

The broker signs two kinds of objects, told apart by the protected header's ``typ`` so that
one can never be replayed as the other: attestation-result tokens (``kb-ar+jwt``) and
release envelopes (``kb-release+jws``). Signing hashes the signing input here and has the
token's key sign the digest (``CKM_ECDSA``); verification uses the public key, in process.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from broker import fastjson
from broker.errors import TokenInvalid
from hsm.errors import PublicKeyInvalid
from hsm.pubkey import b64url, b64url_bytes, b64url_decode, jwk_thumbprint

_ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))

TYP_ATTESTATION_RESULT = "kb-ar+jwt"
TYP_RELEASE = "kb-release+jws"

DigestSigner = Callable[[bytes], Awaitable[bytes]]


def _json(value: Mapping[str, Any]) -> bytes:
    return fastjson.dumps(value, sort_keys=True)


def ec_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of the broker's public key."""
    return jwk_thumbprint(ec_jwk(public_key))


# Every verification compares the token's kid with the broker key's: remember the last key's
# thumbprint (keys are not hashable; the entry holds the key, so its identity is stable).
_last_key_id: tuple[ec.EllipticCurvePublicKey, str] | None = None


def _cached_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    global _last_key_id  # noqa: PLW0603 - a one-entry memo
    last = _last_key_id
    if last is not None and last[0] is public_key:
        return last[1]
    kid = key_id(public_key)
    _last_key_id = (public_key, kid)
    return kid


@functools.lru_cache(maxsize=8)
def _header_segment(typ: str, kid: str) -> bytes:
    """``BASE64URL(header)``: one per kind of object and broker key, so made once."""
    return b64url_bytes(_json({"alg": "ES256", "kid": kid, "typ": typ}))


def signing_input(payload: Mapping[str, Any], typ: str, kid: str) -> bytes:
    """``BASE64URL(header) || '.' || BASE64URL(payload)``, what the signature covers."""
    return b".".join((_header_segment(typ, kid), b64url_bytes(_json(payload))))


def compact(data: bytes, signature: bytes) -> str:
    """The compact JWS of a signing input and its raw ``r || s`` ES256 signature."""
    if len(signature) != 64:
        raise TokenInvalid("HSM returned a malformed ES256 signature")
    return b".".join((data, b64url_bytes(signature))).decode("ascii")


async def sign(payload: Mapping[str, Any], typ: str, kid: str, sign_digest: DigestSigner) -> str:
    data = signing_input(payload, typ, kid)
    return compact(data, await sign_digest(hashlib.sha256(data).digest()))


def sign_sync(
    payload: Mapping[str, Any], typ: str, kid: str, sign_digest: Callable[[bytes], bytes]
) -> str:
    """:func:`sign` for a caller already on the token's thread."""
    data = signing_input(payload, typ, kid)
    return compact(data, sign_digest(hashlib.sha256(data).digest()))


def _decode_segment(segment: str, what: str) -> bytes:
    """Strict RFC 7515 §2 base64url: a segment with padding, whitespace or another alphabet's
    characters is refused, and so is one whose last character sets bits the decoder ignores
    (a re-encoding must give the segment back), so that one token has one spelling."""
    try:
        decoded = b64url_decode(segment, f"token {what}")
    except PublicKeyInvalid:
        raise TokenInvalid(f"token {what} is not base64url") from None
    if b64url_bytes(decoded) != segment.encode("ascii"):
        raise TokenInvalid(f"token {what} is not base64url")
    return decoded


# What a crafted segment can make json.loads (fastjson.loads: the same) raise besides
# JSONDecodeError: bytes that are not UTF-8, or nesting deep enough to exhaust the recursion
# limit.
_UNREADABLE_JSON = (ValueError, RecursionError)


def verify(token: str, typ: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check the signature and header of ``token``; return its payload (claims unchecked)."""
    if not token.isascii():
        raise TokenInvalid("token is not a compact JWS")  # base64url is ASCII (RFC 7515 §2)
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenInvalid("token is not a compact JWS")
    try:
        header = fastjson.loads(_decode_segment(parts[0], "header"))
    except _UNREADABLE_JSON:
        raise TokenInvalid("token header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256" or header.get("typ") != typ:
        raise TokenInvalid(f"token header must say alg ES256 and typ {typ}")
    if header.get("kid") != _cached_key_id(public_key):
        raise TokenInvalid("token was signed by another broker key")
    signature = _decode_segment(parts[2], "signature")
    if len(signature) != 64:
        raise TokenInvalid("token signature is not 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    digest = hashlib.sha256(f"{parts[0]}.{parts[1]}".encode("ascii")).digest()
    try:
        public_key.verify(der, digest, _ES256)
    except InvalidSignature:
        raise TokenInvalid("token signature does not verify") from None
    try:
        payload = fastjson.loads_sorted(_decode_segment(parts[1], "payload"))
    except _UNREADABLE_JSON:
        raise TokenInvalid("token payload is not JSON") from None
    if not isinstance(payload, dict):
        raise TokenInvalid("token payload is not a JSON object")
    return payload
