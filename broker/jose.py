"""Compact JWS with ES256, signed by the broker's HSM key (RFC 7515, RFC 7518 §3.4).

The broker signs two kinds of objects, told apart by the protected header's ``typ`` so that
one can never be replayed as the other: attestation-result tokens (``kb-ar+jwt``) and
release envelopes (``kb-release+jws``). Signing hashes the signing input here and has the
token's key sign the digest (``CKM_ECDSA``); verification uses the public key, in process.
A signature is written and accepted in one form only, ``r || s`` with ``s`` at most ``n/2``
(low S), so that no token or envelope has a second text that verifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from broker import fastjson
from broker.errors import TokenInvalid, TokenUnverified
from broker.lru import memoized
from hsm.errors import PublicKeyInvalid
from hsm.pubkey import b64url, b64url_bytes, b64url_decode, jwk_thumbprint

_ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))

#: The order n of the P-256 group (SEC 2 v2 §2.4.2, FIPS 186-5 / SP 800-186 §3.2.1.3).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER // 2

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


@memoized(8)
def _header_segment(typ_and_kid: tuple[str, str]) -> bytes:
    """``BASE64URL(header)``: one per kind of object and broker key, so made once."""
    typ, kid = typ_and_kid
    return b64url_bytes(_json({"alg": "ES256", "kid": kid, "typ": typ}))


def signing_input(payload: Mapping[str, Any], typ: str, kid: str) -> bytes:
    """``BASE64URL(header) || '.' || BASE64URL(payload)``, what the signature covers."""
    return b".".join((_header_segment((typ, kid)), b64url_bytes(_json(payload))))


def compact(data: bytes, signature: bytes) -> str:
    """The compact JWS of a signing input and its raw ``r || s`` ES256 signature, with ``s``
    made low (:func:`low_s`)."""
    return b".".join((data, b64url_bytes(low_s(signature)))).decode("ascii")


def low_s(signature: bytes) -> bytes:
    """``r || s`` with ``s`` replaced by ``n - s`` when it is above ``n / 2``.

    (r, s) and (r, n - s) both verify (ECDSA checks only the x coordinate of a point that
    negating s negates), so every signature has a twin that :func:`verify` refuses: the
    broker writes only the low one. ``CKM_ECDSA`` (PKCS#11 v2.40 §2.3.6) may return either,
    half the time the high one.
    """
    r, s = _scalars(signature)
    if r is None or s is None:
        raise TokenInvalid("HSM returned a malformed ES256 signature")
    if s > _HALF_ORDER:
        return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")
    return signature


def _scalars(signature: bytes) -> tuple[int | None, int | None]:
    """(r, s) of a raw 64-byte ES256 signature, each None unless within 1..n-1."""
    if len(signature) != 64:
        return None, None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return (r if 0 < r < P256_ORDER else None), (s if 0 < s < P256_ORDER else None)


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
        raise TokenUnverified(f"token {what} is not base64url", "token-malformed") from None
    if b64url_bytes(decoded) != segment.encode("ascii"):
        raise TokenUnverified(f"token {what} is not base64url", "token-malformed")
    return decoded


# What a crafted segment can make json.loads (fastjson.loads: the same) raise besides
# JSONDecodeError: bytes that are not UTF-8, or nesting deep enough to exhaust the recursion
# limit.
_UNREADABLE_JSON = (ValueError, RecursionError)


def _canonical_signature(signature: bytes) -> tuple[int, int]:
    """(r, s) of the one spelling of a signature the broker writes: 64 bytes (RFC 7518
    §3.4), 0 < r < n and 0 < s <= n/2 (low S, :func:`low_s`); ``TokenUnverified``
    otherwise (checked before the signature, so nothing in the token is recognised yet).
    Without the last rule, rewriting s as n - s would give every token a second text that
    verifies."""
    if len(signature) != 64:
        raise TokenUnverified("token signature is not 64 bytes", "token-malformed")
    r, s = _scalars(signature)
    if r is None:
        raise TokenUnverified("token signature r is not within 1..n-1", "token-signature")
    if s is None:
        raise TokenUnverified("token signature s is not within 1..n-1", "token-signature")
    if s > _HALF_ORDER:
        raise TokenUnverified(
            "token signature s is above n/2 (only low-S signatures are valid)", "token-signature"
        )
    return r, s


def verify(token: str, typ: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check the signature and header of ``token``; return its payload (claims unchecked).

    Every refusal before the signature verifies is :class:`TokenUnverified` (nothing in the
    token is known to come from this broker, ``broker/release/unauthenticated.py``); after
    it, :class:`TokenInvalid`."""
    if not token.isascii():  # base64url is ASCII (RFC 7515 §2)
        raise TokenUnverified("token is not a compact JWS", "token-malformed")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenUnverified("token is not a compact JWS", "token-malformed")
    try:
        header = fastjson.loads(_decode_segment(parts[0], "header"))
    except fastjson.DuplicateMember as exc:
        raise TokenUnverified(
            f"token header names member {exc.name[:64]!r} twice", "token-malformed"
        ) from None
    except _UNREADABLE_JSON:
        raise TokenUnverified("token header is not JSON", "token-malformed") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256" or header.get("typ") != typ:
        raise TokenUnverified(f"token header must say alg ES256 and typ {typ}", "token-malformed")
    if header.get("kid") != _cached_key_id(public_key):
        raise TokenUnverified("token was signed by another broker key", "token-key")
    signature = _decode_segment(parts[2], "signature")
    r, s = _canonical_signature(signature)
    der = encode_dss_signature(r, s)
    digest = hashlib.sha256(f"{parts[0]}.{parts[1]}".encode("ascii")).digest()
    try:
        public_key.verify(der, digest, _ES256)
    except InvalidSignature:
        raise TokenUnverified("token signature does not verify", "token-signature") from None
    # Signed by this broker's key: from here a refusal concerns a token it issued.
    try:
        payload = fastjson.loads_sorted(_decode_segment(parts[1], "payload"))
    except fastjson.DuplicateMember as exc:
        raise TokenInvalid(f"token payload names member {exc.name[:64]!r} twice") from None
    except TokenUnverified as exc:
        raise TokenInvalid(exc.detail) from None
    except _UNREADABLE_JSON:
        raise TokenInvalid("token payload is not JSON") from None
    if not isinstance(payload, dict):
        raise TokenInvalid("token payload is not a JSON object")
    return payload
