"""The guest side of the release flow, as a confidential VM or enclave runs it.

Generates an ephemeral RSA key, fetches a challenge, binds nonce and key into the evidence,
attests, asks for the key, checks the broker's signature on the envelope, and opens it with
the ephemeral private key. Used by ``keybroker guest fetch``, the tests and the benchmark.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker import jose
from broker.guest.sources import BindingInput, EvidenceSource
from broker.release.binding import binding_digest, expected_report_data
from hsm.envelope import EnvelopeError, OaepHash, open_envelope
from hsm.pubkey import RsaPublicKey, from_spki_der


class GuestError(RuntimeError):
    """The broker refused, or answered something the guest must not trust."""

    def __init__(self, message: str, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class Released:
    key: str
    version: int
    secret: bytes

    def __repr__(self) -> str:
        return (
            f"Released(key={self.key!r}, version={self.version}, secret=<{len(self.secret)} bytes>)"
        )


def tee_jwk(private_key: rsa.RSAPrivateKey) -> tuple[RsaPublicKey, dict[str, str]]:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = from_spki_der(der)
    return public, public.jwk()


class GuestClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _post(self, path: str, body: dict[str, Any] | None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(path, json=body, headers=headers)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = response.text
            detail = problem.get("detail") if isinstance(problem, dict) else problem
            raise GuestError(
                f"{path}: {response.status_code} {detail}", response.status_code, problem
            )
        try:
            answer = response.json()
        except ValueError:
            raise GuestError(f"{path}: {response.status_code} answer is not JSON") from None
        if not isinstance(answer, dict):
            raise GuestError(f"{path}: answer is not a JSON object")
        return answer

    @staticmethod
    def _member(answer: dict[str, Any], name: str, path: str) -> str:
        value = answer.get(name)
        if not isinstance(value, str):
            raise GuestError(f"{path}: answer lacks the string member '{name}'")
        return value

    async def challenge(self, tee: str) -> str:
        answer = await self._post("/v1/challenge", {"tee": tee})
        return self._member(answer, "nonce", "/v1/challenge")

    async def attest(
        self, source: EvidenceSource, private_key: rsa.RSAPrivateKey, binding_hash: str = "sha384"
    ) -> str:
        public, jwk = tee_jwk(private_key)
        nonce = await self.challenge(source.tee)
        evidence, collateral = source.produce(
            BindingInput(
                report_data=expected_report_data(nonce, jwk, binding_hash),
                nonce=base64.b64decode(nonce),
                public_key_der=public.spki_der(),
                digest=binding_digest(nonce, jwk, binding_hash),
            )
        )
        answer = await self._post(
            "/v1/attest",
            {
                "tee": source.tee,
                "evidence": base64.b64encode(evidence).decode(),
                "tee_pubkey": jwk,
                "nonce": nonce,
                "collateral": {k: base64.b64encode(v).decode() for k, v in collateral.items()},
            },
        )
        return self._member(answer, "token", "/v1/attest")

    async def release(
        self,
        key: str,
        token: str,
        private_key: rsa.RSAPrivateKey,
        broker_key: ec.EllipticCurvePublicKey | None = None,
    ) -> Released:
        _, jwk = tee_jwk(private_key)
        answer = await self._post(f"/v1/keys/{key}/release", {"tee_pubkey": jwk}, token)
        envelope = self._member(answer, "envelope", f"/v1/keys/{key}/release")
        if broker_key is None:
            broker_key = await self.broker_key()
        try:
            signed = jose.verify(envelope, jose.TYP_RELEASE, broker_key)
        except Exception as exc:  # any failure to verify means: do not trust this answer
            raise GuestError(f"release envelope signature does not verify: {exc}") from None
        ciphertext = base64.urlsafe_b64decode(signed["ciphertext"] + "==")
        try:
            secret = open_envelope(
                private_key, ciphertext, OaepHash(signed["oaep_hash"]), int(signed["secret_length"])
            )
        except EnvelopeError as exc:
            raise GuestError(f"release envelope does not open: {exc}") from None
        return Released(str(signed["key"]), int(signed["version"]), secret)

    async def broker_key(self) -> ec.EllipticCurvePublicKey:
        response = await self.http.get("/v1/jwks")
        response.raise_for_status()
        key = response.json()["keys"][0]
        x = int.from_bytes(base64.urlsafe_b64decode(key["x"] + "=="), "big")
        y = int.from_bytes(base64.urlsafe_b64decode(key["y"] + "=="), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()

    async def fetch(
        self,
        source: EvidenceSource,
        key: str,
        rsa_bits: int = 3072,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> Released:
        private_key = private_key or rsa.generate_private_key(65537, rsa_bits)
        token = await self.attest(source, private_key)
        return await self.release(key, token, private_key)
