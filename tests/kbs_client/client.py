"""The RCAR handshake and the resource request, as the reference client performs them.

``KbsClient`` keeps cookies the way reqwest's cookie store does (httpx's cookie jar: a cookie
without a Path attribute belongs to the request's directory, ``/kbs/v0``); ``fetch`` follows
the client's retry rule (a 401 from ``/resource`` redoes the whole handshake, 3 attempts in
all). Evidence comes from a guest object whose ``primary_evidence(runtime_digest)`` signs
its binding with a simulated vendor: the client hands it the RCAR digest unpadded, as the
reference client hands its attester.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwe, jwk

from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from tests.kbs_client.jcs import canonical
from tests.kbs_client.snp import snp_evidence
from tests.kbs_client.wire import (
    PROTOCOL_VERSION,
    SUPPORTED_HASH_ALGORITHMS,
    Challenge,
    ErrorInformation,
    parse_challenge,
    parse_error_information,
    parse_protected_header,
    parse_response,
)

PREFIX = "/kbs/v0"
RESOURCE_ATTEMPTS = 3
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


class KbsError(Exception):
    """A non-200 answer; ``error`` is its ErrorInformation when the body is one."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        try:
            self.error: ErrorInformation | None = parse_error_information(json.loads(body))
        except ValueError:
            self.error = None
        super().__init__(f"{status}: {body[:300]!r}")


class Guest(Protocol):
    tee: str

    def primary_evidence(self, runtime_digest: bytes) -> Any: ...


@dataclass
class TeeKeyPair:
    """The ephemeral key the guest binds and the resource is encrypted to."""

    private: jwk.JWK
    public: dict[str, str]

    @classmethod
    def generate(cls, kind: str = "P-256") -> TeeKeyPair:
        if kind in ("P-256", "P-521"):
            private = jwk.JWK.generate(kty="EC", crv=kind)
            exported = private.export_public(as_dict=True)
            public = {
                "kty": "EC",
                "crv": kind,
                "alg": "ECDH-ES+A256KW",
                "x": exported["x"],
                "y": exported["y"],
            }
        else:
            private = jwk.JWK.generate(kty="RSA", size=int(kind.removeprefix("RSA-")))
            exported = private.export_public(as_dict=True)
            public = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": exported["n"], "e": exported["e"]}
        return cls(private, public)


def runtime_digest(
    hash_name: str, nonce: str, tee_pubkey: dict[str, str], additional: str
) -> bytes:
    """``H(JCS({"additional-evidence", "nonce", "tee-pubkey"}))``, unpadded: what the client
    hands its attester, which pads it to its report's field (SNP, TDX) or quotes it as it is
    (a vTPM)."""
    document = {"additional-evidence": additional, "nonce": nonce, "tee-pubkey": tee_pubkey}
    return _HASHES[hash_name](canonical(document)).digest()


def padded(digest: bytes) -> bytes:
    """A digest as the SNP and TDX attesters put it into the 64-byte REPORT_DATA."""
    return digest + bytes(64 - len(digest))


def open_jwe(body: bytes, key: jwk.JWK) -> bytes:
    """Decrypt a resource answer the reference client's way: parse it, regenerate the
    protected header (kbs-types AAD rule), and decrypt with that as the AAD. The received
    ``protected`` string is never used; an ``aad`` member is ignored."""
    document = json.loads(body)
    response = parse_response(document)  # the client's typed parse first
    regenerated = response.protected.generate_aad()
    token = jwe.JWE()
    token.deserialize(
        json.dumps(
            {
                "protected": regenerated,
                "encrypted_key": document["encrypted_key"],
                "iv": document["iv"],
                "ciphertext": document["ciphertext"],
                "tag": document["tag"],
            }
        ),
        key=key,
    )
    payload: bytes = token.payload
    return payload


@dataclass
class Attested:
    challenge: Challenge
    token: str
    key: TeeKeyPair


class KbsClient:
    def __init__(self, base_url: str, *, timeout: float = 60) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the three requests, one each --------------------------------------------------------

    def auth_request(self, tee: str, *, version: str = PROTOCOL_VERSION) -> dict[str, Any]:
        return {
            "version": version,
            "tee": tee,
            "extra-params": {"supported-hash-algorithms": list(SUPPORTED_HASH_ALGORITHMS)},
        }

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(PREFIX + path, json=body)

    def auth(self, tee: str, **request: Any) -> Challenge:
        answer = self.post("/auth", {**self.auth_request(tee), **request})
        if answer.status_code != 200:
            raise KbsError(answer.status_code, answer.content)
        return parse_challenge(answer.json())

    def attestation(
        self,
        challenge: Challenge,
        guest: Guest,
        key: TeeKeyPair,
        *,
        init_data: dict[str, str] | None = None,
        additional_evidence: str = "",
        hash_name: str | None = None,
    ) -> dict[str, Any]:
        """The Attestation body, its evidence bound as the client binds it."""
        bound = runtime_digest(
            hash_name or challenge.selected_hash(),
            challenge.nonce,
            key.public,
            additional_evidence,
        )
        return {
            "init-data": init_data,
            "runtime-data": {"nonce": challenge.nonce, "tee-pubkey": key.public},
            "tee-evidence": {
                "primary_evidence": guest.primary_evidence(bound),
                "additional_evidence": additional_evidence,
            },
        }

    def attest(self, body: dict[str, Any]) -> str:
        answer = self.post("/attest", body)
        if answer.status_code != 200:
            raise KbsError(answer.status_code, answer.content)
        token: str = answer.json()["token"]
        return token

    def resource_answer(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(f"{PREFIX}/resource/{path}", headers=headers)

    # --- what the reference client does with them --------------------------------------------

    def handshake(self, guest: Guest, key: TeeKeyPair | None = None) -> Attested:
        key = key or TeeKeyPair.generate()
        challenge = self.auth(guest.tee)
        token = self.attest(self.attestation(challenge, guest, key))
        return Attested(challenge, token, key)

    def fetch(self, guest: Guest, path: str, key: TeeKeyPair | None = None) -> bytes:
        """``get_resource``: handshake, GET, decrypt; on 401 redo the handshake (3 attempts
        in all); 404 and every other status fail at once."""
        attested = self.handshake(guest, key)
        for attempt in range(1, RESOURCE_ATTEMPTS + 1):
            answer = self.resource_answer(path)
            if answer.status_code == 200:
                return open_jwe(answer.content, attested.key.private)
            if answer.status_code != 401 or attempt == RESOURCE_ATTEMPTS:
                raise KbsError(answer.status_code, answer.content)
            attested = self.handshake(guest, attested.key)
        raise AssertionError("unreachable")


# --- simulated guests ------------------------------------------------------------------------


@dataclass
class SnpGuest:
    """A guest on the synthetic AMD chain, sending ``SnpEvidence`` with its VCEK, ASK and ARK
    in ``cert_chain``, as a host with an extended-report certificate table supplies them."""

    kit_dir: Path
    measurement: bytes
    host_data: bytes = bytes(32)
    tee: str = "snp"

    def primary_evidence(self, runtime_digest: bytes) -> Any:
        kit = SnpKit.load(self.kit_dir)
        raw = kit.sign(
            kit.report(
                report_data=padded(runtime_digest),
                measurement=self.measurement,
                host_data=self.host_data,
            )
        )
        return snp_evidence(raw, _snp_certificates(kit))


def _snp_certificates(kit: SnpKit) -> dict[str, bytes]:
    return {name: getattr(kit, name.lower()).public_bytes(Encoding.DER) for name in _SNP_CHAIN}


_SNP_CHAIN = ("VCEK", "ASK", "ARK")

#: TD_ATTRIBUTES of a production TD (SEPT_VE_DISABLE, bit 28), little-endian.
TD_PRODUCTION = (1 << 28).to_bytes(8, "little")


@dataclass
class TdxGuest:
    """A TD on the synthetic Intel kit, sending ``TdxEvidence`` without an event log."""

    kit_dir: Path
    mr_td: bytes
    tee: str = "tdx"

    def primary_evidence(self, runtime_digest: bytes) -> Any:
        kit = IntelKit.load(self.kit_dir)
        quote = kit.tdx_quote(padded(runtime_digest), mr_td=self.mr_td, td_attributes=TD_PRODUCTION)
        return {"cc_eventlog": None, "quote": base64.b64encode(quote).decode()}


def protected_of(body: bytes) -> dict[str, Any]:
    """The decoded protected header of a resource answer (for assertions)."""
    header = parse_protected_header(json.loads(body)["protected"])
    return {"alg": header.alg, "enc": header.enc, **header.other_fields}
