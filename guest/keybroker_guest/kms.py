"""A KMS ``Recipient`` for a guest that is not a Nitro enclave (docs/kms.md, "Evidence
bundles").

The AWS SDKs check request shapes before they send them, so a ``Recipient`` can carry only
the members of the KMS model: ``KeyEncryptionAlgorithm`` and the blob
``AttestationDocument``. A Nitro enclave puts its attestation document there (COSE_Sign1,
CBOR). Any other guest puts this bundle there instead: a JSON object, whose first byte ``{``
no COSE_Sign1 document starts with. It holds the guest's evidence, which binds the
recipient's RSA key and a nonce the broker issued exactly as the native API's attestation
does (``keybroker_guest.binding``), with the JWK ``{"kty": "RSA", "n", "e"}`` of that key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keybroker_guest.binding import binding_digest, report_data
from keybroker_guest.evidence import BindingInput, EvidenceSource
from keybroker_guest.teekey import rsa_jwk

#: The ``format`` member that names the bundle and its version.
FORMAT = "keybroker-kms-evidence/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def binding_input(nonce: str, public_key_der: bytes) -> BindingInput:
    """What evidence must bind for the RSA key ``public_key_der`` (DER SubjectPublicKeyInfo)
    and the challenge ``nonce`` (the string ``POST /v1/challenge`` returned)."""
    key = serialization.load_der_public_key(public_key_der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a KMS Recipient's key is an RSA key (RSAES_OAEP_SHA_256)")
    jwk = rsa_jwk(key)
    return BindingInput(
        report_data(nonce, jwk),
        base64.b64decode(nonce, validate=True),
        public_key_der,
        digest=binding_digest(nonce, jwk),
    )


def bundle(
    tee: str,
    evidence: bytes,
    public_key_der: bytes,
    nonce: str,
    collateral: Mapping[str, bytes] | None = None,
) -> bytes:
    """The bundle's bytes: compact UTF-8 JSON, members sorted."""
    document: dict[str, object] = {
        "format": FORMAT,
        "tee": tee,
        "evidence": _b64(evidence),
        "public_key": _b64(public_key_der),
        "nonce": nonce,
    }
    if collateral:
        document["collateral"] = {name: _b64(value) for name, value in collateral.items()}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def recipient_evidence(source: EvidenceSource, public_key_der: bytes, nonce: str) -> bytes:
    """Evidence from ``source`` binding ``public_key_der`` and ``nonce``, as a bundle."""
    evidence, collateral = source.produce(binding_input(nonce, public_key_der))
    return bundle(source.tee, evidence, public_key_der, nonce, collateral)
