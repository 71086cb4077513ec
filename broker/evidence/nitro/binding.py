"""How a Nitro document binds the release flow's challenge and the enclave's key.

Other TEEs carry one 64-byte REPORT_DATA, into which the guest puts a hash of the challenge
nonce and its public key. A Nitro document has dedicated, signed fields instead (AWS User
Guide, "Attestation document specification"): ``nonce`` ("an optional cryptographic nonce
provided by the attestation consumer") and ``public_key`` ("an optional DER-encoded key the
attestation consumer can use to encrypt data with"). For ``tee: nitro`` the release flow
therefore requires:

* ``nonce`` equal, byte for byte, to the challenge nonce the broker issued;
* ``public_key`` to be the tee public key, as a DER SubjectPublicKeyInfo. Both sides are loaded
  and re-encoded before comparison, so equivalent encodings of one key (an EC point compressed
  or not) match, and anything that is not a key does not.

``user_data`` is left to the application (it often carries a TLS key or a hash).
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from broker.errors import BindingMismatch, PublicKeyInvalid
from broker.evidence.claims import Claims, Tee

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_binding(claims: Claims, nonce: bytes, tee_public_key_der: bytes) -> None:
    """Raise ``BindingMismatch`` unless ``claims`` bind ``nonce`` and ``tee_public_key_der``.

    ``claims`` are those of a verified Nitro document; ``tee_public_key_der`` is the key the
    enclave asks the broker to wrap to, as DER SubjectPublicKeyInfo. A ``tee_public_key_der``
    that is not a public key raises ``PublicKeyInvalid`` (the caller's input, not the evidence).
    """
    if claims.tee is not Tee.NITRO:
        raise BindingMismatch(f"nitro binding rules apply to tee nitro, not {claims.tee.value}")
    wanted_key = _canonical_spki(tee_public_key_der)
    if wanted_key is None:
        raise PublicKeyInvalid("tee public key is not a DER SubjectPublicKeyInfo")

    document_nonce = _field_bytes(claims, "nonce")
    if document_nonce is None:
        raise BindingMismatch(
            "document nonce is absent; the enclave must put the challenge nonce in the "
            "attestation document's nonce field"
        )
    if not hmac.compare_digest(document_nonce, nonce):
        raise BindingMismatch(
            f"document nonce {_short(document_nonce)} != challenge nonce {_short(nonce)}"
        )

    document_key = _field_bytes(claims, "public_key")
    if document_key is None:
        raise BindingMismatch(
            "document public_key is absent; the enclave must put its tee public key (DER "
            "SubjectPublicKeyInfo) in the attestation document's public_key field"
        )
    found_key = _canonical_spki(document_key)
    if found_key is None:
        raise BindingMismatch(
            f"document public_key ({len(document_key)} bytes, {_short(document_key)}) is not a "
            "DER SubjectPublicKeyInfo"
        )
    if not hmac.compare_digest(found_key, wanted_key):
        raise BindingMismatch(
            f"document public_key {_short(found_key)} is not the tee public key "
            f"{_short(wanted_key)} (DER SubjectPublicKeyInfo)"
        )


def _field_bytes(claims: Claims, name: str) -> bytes | None:
    value = claims.fields.get(name)
    if value is None:
        return None
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise BindingMismatch(f"claim {name} is not hex: {str(value)[:32]!r}") from None


def _canonical_spki(der: bytes) -> bytes | None:
    """``der`` loaded as a public key and re-encoded as DER SPKI; None when it is not one."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key.public_bytes(*_SPKI)


def _short(value: bytes) -> str:
    """Enough hex to tell values apart in a message without printing kilobytes."""
    text = value.hex()
    return text if len(text) <= 24 else f"{text[:16]}...{text[-8:]} ({len(value)} bytes)"
