"""A stand-in for the broker's guest-facing API, served through ``httpx.MockTransport``.

It answers ``/v1/challenge``, ``/v1/attest``, ``/v1/keys/{name}/release`` (with a token, or
with the attestation in the body: the one-request flow) and ``/v1/jwks`` as the broker does
(an envelope sealed to the guest's JWK and signed ES256), and can refuse at any step or spoil
the envelope, so the guest side's checks run without a database or HSM.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from keybroker_guest.errors import Unreachable
from keybroker_guest.transport import Reply

from broker import jose
from hsm.pubkey import b64url, from_jwk

Spoil = Callable[[str], str]


def sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def flip_signature(envelope: str) -> str:
    head, payload, signature = envelope.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def alter_payload(envelope: str) -> str:
    """The same signature over a payload that names another key version."""
    head, payload, signature = envelope.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=="))
    fields["version"] = 2
    return f"{head}.{_segment(fields)}.{signature}"


@dataclass
class FakeBroker:
    secret: bytes = b"the disk key"
    key_name: str = "disk-key"
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Path -> (status, problem detail) answered instead of the normal reply."""
    stated_length: int | None = None
    """The ``secret_length`` the envelope states, when not the secret's own."""
    spoil: Spoil | None = None
    """Applied to the signed envelope before it is sent."""
    signing_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    jwks_key: ec.EllipticCurvePublicKey | None = None
    """What ``/v1/jwks`` serves instead of the signing key's public half."""
    paths: list[str] = field(default_factory=list)
    """The paths requested, in order."""

    def transport(self) -> httpx.MockTransport:
        """The broker for the asynchronous test driver (``broker.guest.client``)."""
        return httpx.MockTransport(self.handle)

    def lean(self) -> LeanTransport:
        """The broker for the lean client (``keybroker_guest.transport.Transport``)."""
        return LeanTransport(self)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        token = request.headers.get("authorization")
        status, document = self.answer(request.url.path, body, token)
        return httpx.Response(status, json=document)

    def answer(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        self.paths.append(path)
        if path in self.refuse:
            status, detail = self.refuse[path]
            problem = {"type": "about:blank", "title": "refused", "status": status}
            return status, {**problem, "detail": detail}
        if path == "/v1/challenge":
            return 200, {"nonce": base64.b64encode(bytes(32)).decode()}
        if path == "/v1/attest":
            return 200, {"token": "a-token"}
        if path == f"/v1/keys/{self.key_name}/release":
            attested = {"tee", "evidence", "tee_pubkey", "nonce"} <= set(body)
            if token is None and not attested:
                return 401, {"detail": "neither a token nor evidence"}
            return 200, {"envelope": self._envelope(body["tee_pubkey"])}
        if path == "/v1/jwks":
            served = self.jwks_key or self.signing_key.public_key()
            return 200, {"keys": [jose.ec_jwk(served)]}
        return 404, {"detail": f"no route {path}"}

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint of the key this broker signs with (what a guest pins)."""
        return jose.key_id(self.signing_key.public_key())

    def _envelope(self, jwk: dict[str, Any]) -> str:
        guest_key = from_jwk(jwk).to_cryptography()
        kek = os.urandom(32)
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        ciphertext = guest_key.encrypt(kek, oaep) + aes_key_wrap_with_padding(kek, self.secret)
        payload = {
            "key": self.key_name,
            "version": 1,
            "oaep_hash": "sha256",
            "secret_length": self.stated_length or len(self.secret),
            "ciphertext": b64url(ciphertext),
        }
        kid = jose.key_id(self.signing_key.public_key())
        signed = jose.sign_sync(
            payload, jose.TYP_RELEASE, kid, lambda d: sign_digest(self.signing_key, d)
        )
        return signed if self.spoil is None else self.spoil(signed)


@dataclass
class LeanTransport:
    broker: FakeBroker
    unreachable: int = 0
    """How many requests fail as if the network were down before the broker answers."""

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Reply:
        if self.unreachable > 0:
            self.unreachable -= 1
            raise Unreachable("cannot reach http://broker.test:80: Connection refused")
        status, document = self.broker.answer(path, body, token)
        return Reply(status, json.dumps(document).encode())
