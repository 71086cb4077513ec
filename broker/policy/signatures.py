"""Signed reference files: detached signatures by keys a policy names (docs/reference-values.md).

A reference file ``images.yaml`` is signed by a detached signature in ``images.yaml.sig``
beside it, in the shape ``cosign sign-blob --key`` writes: the base64 text of a signature
over the file's exact bytes, by

* an ECDSA P-256 key: ASN.1 DER ``ECDSA-Sig-Value`` over SHA-256 of the bytes (FIPS 186-5,
  RFC 5480), as cosign signs a blob with an ECDSA key; or
* an Ed25519 key: the 64-byte signature of the bytes themselves (RFC 8032, PureEdDSA).

A policy names the keys it trusts under ``reference_sets.signers`` as PEM public keys
(cosign's ``cosign.pub``), so the policy's digest covers who may sign its reference values.
A signed file is carried verbatim, with its signature, in the policy's canonical form
(``signed_references``), and is verified again wherever that form is loaded: by the CLI
from files, by the broker from a published or stored policy.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key

#: The suffix of a reference file's detached signature: ``images.yaml`` -> ``images.yaml.sig``.
SIGNATURE_SUFFIX = ".sig"
#: A signature file is a line of base64; anything longer is not one.
MAX_SIGNATURE_TEXT = 4096

SigningKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SignerKeyInvalid(ValueError):
    """A signer's public key is not a PEM ECDSA P-256 or Ed25519 key."""


def load_signer_key(pem: str) -> SigningKey:
    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError):
        raise SignerKeyInvalid("not a PEM public key (SubjectPublicKeyInfo)") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    kind = f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key)
    name = kind if isinstance(kind, str) else kind.__name__.removeprefix("_")
    raise SignerKeyInvalid(f"must be an ECDSA P-256 or Ed25519 key, found {name}")


@dataclass(frozen=True, slots=True)
class ReferenceSigner:
    name: str
    public_key: str
    """The PEM text as the policy wrote it (the canonical form keeps it verbatim)."""
    key: SigningKey

    def verifies(self, data: bytes, signature: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "public_key": self.public_key}


@dataclass(frozen=True, slots=True)
class ReferenceSetRules:
    """``reference_sets``: the trusted signers, and whether every set must be signed."""

    signers: tuple[ReferenceSigner, ...]
    require_signed: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"signers": [signer.to_json() for signer in self.signers]}
        if self.require_signed:
            doc["require_signed"] = True
        return doc

    @property
    def names(self) -> str:
        return ", ".join(signer.name for signer in self.signers)

    def signer_of(self, data: bytes, signature_text: str) -> ReferenceSigner:
        """The signer whose key made ``signature_text`` over ``data``; :class:`BadSignature`
        naming why otherwise (not base64, or no signer's key verifies it)."""
        signature = decode_signature(signature_text)
        for signer in self.signers:
            if signer.verifies(data, signature):
                return signer
        raise BadSignature(f"the signature does not verify with any signer ({self.names})")


class BadSignature(ValueError):
    """A detached signature that is malformed or made by no trusted signer."""


def decode_signature(text: str) -> bytes:
    """The signature bytes of a ``.sig`` file's text: one line of standard base64."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_SIGNATURE_TEXT:
        raise BadSignature("the signature is empty or too long to be one")
    try:
        return base64.b64decode(stripped, validate=True)
    except binascii.Error:
        raise BadSignature("the signature is not base64 text") from None


def rules_from_json(doc: Mapping[str, Any]) -> tuple[ReferenceSetRules, list[tuple[int, str]]]:
    """The rules of a schema-valid ``reference_sets`` object, and ``(signer index, message)``
    for each signer whose key cannot verify anything (such signers are left out)."""
    signers: list[ReferenceSigner] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc["signers"]):
        name, pem = entry["name"], entry["public_key"]
        if name in seen:
            problems.append((index, f"signer '{name}' is named twice"))
            continue
        seen.add(name)
        try:
            signers.append(ReferenceSigner(name, pem, load_signer_key(pem)))
        except SignerKeyInvalid as exc:
            problems.append((index, f"signer '{name}': public key {exc}"))
    return ReferenceSetRules(tuple(signers), bool(doc.get("require_signed", False))), problems


@dataclass(frozen=True, slots=True)
class SignedReference:
    """A reference file as it was signed, and who signed it (verified)."""

    file: str
    text: str
    signature: str
    signer: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "text": self.text, "signature": self.signature}


def signers_named(rules: ReferenceSetRules | None) -> Sequence[str]:
    return () if rules is None else tuple(signer.name for signer in rules.signers)
