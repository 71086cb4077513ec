"""The broker's guest API (docs/api.md, "The guest flow") as requests to make and answers to
read, without any I/O: this client's flow and the broker's own asynchronous test driver
(``broker/guest/client.py``) speak it alike.

Every answer is judged here: a refusal becomes the error of its class (and exit status), an
answer of the wrong shape is ``Untrusted``, and an envelope is opened only once the pinned
broker key is shown to have signed it, for the key that was asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import rsa

from keybroker_guest.encoding import b64, from_b64url
from keybroker_guest.envelope import open_envelope
from keybroker_guest.errors import Denied, EvidenceError, GuestError, Unreachable, Untrusted
from keybroker_guest.jws import TYP_RELEASE, BrokerKey, verify
from keybroker_guest.transport import Reply

CHALLENGE = "/v1/challenge"
ATTEST = "/v1/attest"
JWKS = "/v1/jwks"


def release_path(key: str) -> str:
    return f"/v1/keys/{quote(key, safe='')}/release"


@dataclass(frozen=True)
class Released:
    key: str
    version: int
    secret: bytes

    def __repr__(self) -> str:
        return (
            f"Released(key={self.key!r}, version={self.version}, secret=<{len(self.secret)} bytes>)"
        )


def refusal(path: str, status: int, problem: Any) -> GuestError:
    """The error a refusal is: evidence judged invalid (422), not now (429, 5xx), or denied
    (any other 4xx: policy, key, token, nonce, request). The message keeps the broker's
    ``detail``, which names the failed rule."""
    detail = problem.get("detail") if isinstance(problem, dict) else problem
    message = f"{path}: {status} {detail}"
    if status == 422:
        return EvidenceError(message, status, problem)
    if status == 429 or status >= 500:
        return Unreachable(message, status, problem)
    return Denied(message, status, problem)


def answer(path: str, status: int, body: bytes) -> dict[str, Any]:
    """The JSON object a successful answer carries; the refusal's error otherwise."""
    try:
        document = json.loads(body) if body else None
    except ValueError:  # JSON or UTF-8
        document = None
    if status >= 400:
        text = body[:200].decode("utf-8", "replace")
        raise refusal(path, status, document if document is not None else text)
    if document is None:
        raise Untrusted(f"{path}: {status} answer is not JSON")
    if not isinstance(document, dict):
        raise Untrusted(f"{path}: answer is not a JSON object")
    return document


def read(path: str, reply: Reply) -> dict[str, Any]:
    return answer(path, reply.status, reply.body)


def member(document: Mapping[str, Any], name: str, path: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise Untrusted(f"{path}: answer lacks the string member '{name}'")
    return value


def challenge_request(tee: str) -> dict[str, Any]:
    return {"tee": tee}


def read_nonce(document: Mapping[str, Any]) -> str:
    return member(document, "nonce", CHALLENGE)


def attest_request(
    tee: str, evidence: bytes, collateral: Mapping[str, bytes], jwk: Mapping[str, str], nonce: str
) -> dict[str, Any]:
    return {
        "tee": tee,
        "evidence": b64(evidence),
        "tee_pubkey": dict(jwk),
        "nonce": nonce,
        "collateral": {name: b64(value) for name, value in collateral.items()},
    }


def read_token(document: Mapping[str, Any]) -> str:
    return member(document, "token", ATTEST)


def release_request(jwk: Mapping[str, str]) -> dict[str, Any]:
    """Names the tee key the release must be wrapped to: a token for another is refused."""
    return {"tee_pubkey": dict(jwk)}


def read_envelope(document: Mapping[str, Any], key: str) -> str:
    return member(document, "envelope", release_path(key))


def read_jwks(document: Mapping[str, Any]) -> list[BrokerKey]:
    keys = document.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise Untrusted(f"{JWKS}: answer is not a JWK set")
    return [BrokerKey.from_jwk(k) for k in keys]


def pinned_key(keys: list[BrokerKey], thumbprint: str | None) -> BrokerKey:
    """The key of ``keys`` whose RFC 7638 thumbprint is ``thumbprint``; with no pin, the one
    key the broker serves. ``Untrusted`` otherwise."""
    if thumbprint is not None:
        for key in keys:
            if key.thumbprint == thumbprint:
                return key
        served = ", ".join(k.thumbprint for k in keys) or "none"
        raise Untrusted(f"the broker signs with {served}, not the pinned key {thumbprint}")
    if len(keys) != 1:
        raise Untrusted(f"{JWKS} lists {len(keys)} keys: pin the broker's signing key")
    return keys[0]


def open_release(
    envelope: str, broker_key: BrokerKey, private_key: rsa.RSAPrivateKey, key: str
) -> Released:
    """The secret in ``envelope``, once ``broker_key`` is shown to have signed it for ``key``."""
    payload = verify(envelope, TYP_RELEASE, broker_key)
    if payload.get("key") != key:
        raise Untrusted(f"the envelope is for key {str(payload.get('key'))[:128]!r}, not {key!r}")
    version, length = _count(payload.get("version")), _count(payload.get("secret_length"))
    oaep_hash, ciphertext = payload.get("oaep_hash"), payload.get("ciphertext")
    if (
        version is None
        or length is None
        or not isinstance(oaep_hash, str)
        or not isinstance(ciphertext, str)
    ):
        raise Untrusted(
            "the envelope's payload lacks version, secret_length, oaep_hash or ciphertext"
        )
    try:
        sealed = from_b64url(ciphertext, "ciphertext")
    except ValueError as exc:
        raise Untrusted(f"the envelope's {exc}") from None
    secret = open_envelope(private_key, sealed, oaep_hash, length)
    return Released(key, version, secret)


def _count(value: object) -> int | None:
    """``value`` if it is a JSON integer >= 0, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
