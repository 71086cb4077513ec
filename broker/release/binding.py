"""What the evidence must bind: the challenge nonce and the tee public key.

For SNP, TDX and SGX the guest puts ``H(JCS({"nonce": <nonce>, "tee-pubkey": <JWK>}))`` into
the 64-byte REPORT_DATA, zero-padded, with H = SHA-384 (48 bytes + 16 zeros) or SHA-512 (all
64 bytes). This is the runtime-data binding of Trustee's KBS protocol, so one guest tool
serves both. ``nonce`` is the string the broker handed out (standard base64 of 32 bytes) and
the JWK is hashed as the guest sent it, canonicalised (RFC 8785).

For Nitro the document carries the two separately: its ``nonce`` field must equal the 32
nonce bytes and its ``public_key`` field the DER SubjectPublicKeyInfo of the tee key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from broker.errors import BindingMismatch
from broker.evidence.claims import Claims, Tee
from broker.evidence.nitro.binding import check_binding as check_nitro_binding
from broker.jcs import canonicalize
from hsm.pubkey import RsaPublicKey

REPORT_DATA_BYTES = 64


def runtime_data(nonce_text: str, jwk: Mapping[str, Any]) -> bytes:
    return canonicalize({"nonce": nonce_text, "tee-pubkey": dict(jwk)})


def expected_report_data(nonce_text: str, jwk: Mapping[str, Any], algorithm: str) -> bytes:
    return _report_data(runtime_data(nonce_text, jwk), algorithm)


def _report_data(document: bytes, algorithm: str) -> bytes:
    if algorithm == "sha384":
        return hashlib.sha384(document).digest() + bytes(16)
    if algorithm == "sha512":
        return hashlib.sha512(document).digest()
    raise ValueError(f"binding hash {algorithm} not sha384/sha512")


def check_report_data(report_data: bytes | None, nonce_text: str, jwk: Mapping[str, Any]) -> str:
    """Return the hash that matched; ``BindingMismatch`` when neither does."""
    if report_data is None or len(report_data) != REPORT_DATA_BYTES:
        raise BindingMismatch("evidence carries no 64-byte REPORT_DATA")
    document = runtime_data(nonce_text, jwk)  # once, for either hash
    for algorithm in ("sha384", "sha512"):
        if hmac.compare_digest(report_data, _report_data(document, algorithm)):
            return algorithm
    raise BindingMismatch(
        "REPORT_DATA is neither SHA-384 nor SHA-512 of JCS({nonce, tee-pubkey}) for this "
        f"challenge and key (found {report_data[:8].hex()}...)"
    )


def check_binding(
    claims: Claims, nonce: bytes, nonce_text: str, jwk: Mapping[str, Any], tee_key: RsaPublicKey
) -> str:
    if claims.tee is Tee.NITRO:
        check_nitro_binding(claims, nonce, tee_key.spki_der())
        return "nitro-fields"
    return check_report_data(claims.report_data, nonce_text, jwk)
