"""The guest flow on an asynchronous httpx client, for the broker's tests and benchmark.

A guest in production runs the lean client (``keybroker_guest``, docs/boot.md), which speaks
HTTP with the standard library. Tests and the load generator need many guests at once on one
event loop, so this driver sends the same requests with httpx; what it sends and how it judges
the answers (refusals, the envelope's signature by the broker key, its opening) are the lean
client's own (``keybroker_guest.protocol``), so the broker's tests hold the broker to what a
real guest checks.
"""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from keybroker_guest import protocol
from keybroker_guest.binding import binding_digest, report_data
from keybroker_guest.encoding import from_b64
from keybroker_guest.errors import GuestError
from keybroker_guest.evidence import BindingInput, EvidenceSource
from keybroker_guest.jws import BrokerKey
from keybroker_guest.protocol import Released

from hsm.pubkey import RsaPublicKey, from_spki_der

__all__ = ["GuestClient", "GuestError", "Released", "tee_jwk"]


def tee_jwk(private_key: rsa.RSAPrivateKey) -> tuple[RsaPublicKey, dict[str, str]]:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = from_spki_der(der)
    return public, public.jwk()


class GuestClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(path, json=body, headers=headers)
        return protocol.answer(path, response.status_code, response.content)

    async def challenge(self, tee: str) -> str:
        answer = await self._post(protocol.CHALLENGE, protocol.challenge_request(tee))
        return protocol.read_nonce(answer)

    async def attestation(
        self, source: EvidenceSource, private_key: rsa.RSAPrivateKey, binding_hash: str = "sha384"
    ) -> dict[str, Any]:
        """A fresh challenge's nonce and evidence binding it to ``private_key``'s public key:
        the body of an attestation, at /v1/attest or in a one-request release."""
        public, jwk = tee_jwk(private_key)
        nonce = await self.challenge(source.tee)
        evidence, collateral = source.produce(
            BindingInput(
                report_data=report_data(nonce, jwk, binding_hash),
                nonce=from_b64(nonce, "nonce"),
                public_key_der=public.spki_der(),
                digest=binding_digest(nonce, jwk, binding_hash),
            )
        )
        return protocol.attest_request(source.tee, evidence, collateral, jwk, nonce)

    async def attest(
        self, source: EvidenceSource, private_key: rsa.RSAPrivateKey, binding_hash: str = "sha384"
    ) -> str:
        """An attestation-result token, for several releases (the token flow)."""
        body = await self.attestation(source, private_key, binding_hash)
        return protocol.read_token(await self._post(protocol.ATTEST, body))

    async def release(
        self,
        key: str,
        token: str,
        private_key: rsa.RSAPrivateKey,
        broker_key: BrokerKey | None = None,
    ) -> Released:
        """``key`` released with a token from :meth:`attest`."""
        _, jwk = tee_jwk(private_key)
        answer = await self._post(protocol.release_path(key), protocol.release_request(jwk), token)
        return await self._opened(answer, key, private_key, broker_key)

    async def attested_release(
        self,
        source: EvidenceSource,
        key: str,
        private_key: rsa.RSAPrivateKey,
        broker_key: BrokerKey | None = None,
    ) -> Released:
        """``key`` released in one request carrying the attestation (no token): two round
        trips in all, the challenge and this."""
        body = await self.attestation(source, private_key)
        answer = await self._post(protocol.release_path(key), body)
        return await self._opened(answer, key, private_key, broker_key)

    async def _opened(
        self,
        answer: dict[str, Any],
        key: str,
        private_key: rsa.RSAPrivateKey,
        broker_key: BrokerKey | None,
    ) -> Released:
        """The secret in a release answer, once the broker's signature on it verifies."""
        envelope = protocol.read_envelope(answer, key)
        if broker_key is None:
            broker_key = await self.broker_key()
        return protocol.open_release(envelope, broker_key, private_key, key)

    async def broker_key(self) -> BrokerKey:
        """The one key ``/v1/jwks`` serves (the tests' broker is their own: no pin)."""
        response = await self.http.get(protocol.JWKS)
        keys = protocol.read_jwks(
            protocol.answer(protocol.JWKS, response.status_code, response.content)
        )
        return protocol.pinned_key(keys, None)

    async def fetch(
        self,
        source: EvidenceSource,
        key: str,
        rsa_bits: int = 3072,
        private_key: rsa.RSAPrivateKey | None = None,
        *,
        flow: str = "one-request",
    ) -> Released:
        """``key``, by the one-request flow (challenge, release) unless ``flow`` is
        ``token`` (challenge, attest, release: the flow for several keys on one token)."""
        # Any size: tests hold the broker to refusing keys the lean client never makes.
        private_key = private_key or rsa.generate_private_key(65537, rsa_bits)
        if flow == "one-request":
            return await self.attested_release(source, key, private_key)
        if flow != "token":
            raise ValueError(f"flow must be one-request or token, not {flow!r}")
        token = await self.attest(source, private_key)
        return await self.release(key, token, private_key)
