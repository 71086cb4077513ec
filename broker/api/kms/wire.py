"""The KMS JSON 1.1 protocol's requests and answers, for the operations keybroker serves.

A request is ``POST`` with ``Content-Type: application/x-amz-json-1.1`` and ``X-Amz-Target:
TrentService.<Operation>``; its body is a JSON object whose blob members are standard base64
(the botocore ``kms`` 2014-11-01 service model names each member, its type and its limits).
Members the model defines but keybroker has no use for (``GrantTokens``) are accepted and
ignored, as AWS ignores grant tokens that grant nothing; members it cannot honour
(``DryRun: true``, ``CustomKeyStoreId``, an ``EncryptionAlgorithm`` other than
``SYMMETRIC_DEFAULT``) are refused rather than ignored; any other member is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.api.kms import bundle
from broker.errors import BadRequest
from broker.release.kms import SYMMETRIC_DEFAULT, Operation, RecipientEvidence

TARGET_PREFIX = "TrentService."
CONTENT_TYPE = "application/x-amz-json-1.1"
#: ``RecipientInfo.KeyEncryptionAlgorithm``: the model's one value.
RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"
#: Model limits (``PlaintextType``, ``CiphertextType``, ``AttestationDocumentType``,
#: ``NumberOfBytesType``, ``KeyIdType``, ``EncryptionContextType``).
MAX_PLAINTEXT = 4096
MAX_CIPHERTEXT = 6144
MAX_ATTESTATION_DOCUMENT = 262144
MAX_NUMBER_OF_BYTES = 1024
MAX_KEY_ID = 2048
KEY_SPECS = {"AES_256": 32, "AES_128": 16}

_COMMON = {"GrantTokens", "DryRun"}
MEMBERS: dict[Operation, set[str]] = {
    Operation.ENCRYPT: {"KeyId", "Plaintext", "EncryptionContext", "EncryptionAlgorithm"},
    Operation.DECRYPT: {
        "CiphertextBlob",
        "EncryptionContext",
        "KeyId",
        "EncryptionAlgorithm",
        "Recipient",
    },
    Operation.GENERATE_DATA_KEY: {
        "KeyId",
        "EncryptionContext",
        "NumberOfBytes",
        "KeySpec",
        "Recipient",
    },
    Operation.GENERATE_DATA_KEY_WITHOUT_PLAINTEXT: {
        "KeyId",
        "EncryptionContext",
        "NumberOfBytes",
        "KeySpec",
    },
    Operation.GENERATE_RANDOM: {"NumberOfBytes", "CustomKeyStoreId", "Recipient"},
    Operation.DESCRIBE_KEY: {"KeyId"},
    Operation.LIST_KEYS: {"Limit", "Marker"},
    Operation.LIST_ALIASES: {"KeyId", "Limit", "Marker"},
}


def operation(target: str | None) -> Operation:
    """The operation ``X-Amz-Target`` names; ``UnknownOperation`` for anything else."""
    if target is None or not target.startswith(TARGET_PREFIX):
        raise UnknownOperation("X-Amz-Target must be TrentService.<Operation>")
    name = target[len(TARGET_PREFIX) :]
    try:
        return Operation(name)
    except ValueError:
        raise UnknownOperation(f"operation {name[:64]!r} is not served by keybroker") from None


class UnknownOperation(BadRequest):
    """An ``X-Amz-Target`` keybroker does not serve (KMS: ``UnknownOperationException``)."""

    type = "unknown-operation"


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request body."""

    members: Mapping[str, Any]

    def key_id(self, required: bool = True) -> str | None:
        value = self.members.get("KeyId")
        if value is None:
            if required:
                raise BadRequest("KeyId is required")
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_ID:
            raise BadRequest(f"KeyId must be a string of 1 to {MAX_KEY_ID} characters")
        return value

    def blob(self, name: str, maximum: int, *, required: bool = True) -> bytes | None:
        value = self.members.get(name)
        if value is None:
            if required:
                raise BadRequest(f"{name} is required")
            return None
        decoded = _base64(value, name)
        if not 1 <= len(decoded) <= maximum:
            raise BadRequest(f"{name} must be 1 to {maximum} bytes (found {len(decoded)})")
        return decoded

    def context(self) -> dict[str, str] | None:
        value = self.members.get("EncryptionContext")
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise BadRequest("EncryptionContext must be an object of strings")
        return value

    def recipient(self) -> RecipientEvidence | None:
        """The Recipient's evidence (a Nitro document, or an evidence bundle: ``bundle.py``),
        or None when none was sent."""
        value = self.members.get("Recipient")
        if value is None:
            return None
        if not isinstance(value, dict) or not set(value) <= {
            "KeyEncryptionAlgorithm",
            "AttestationDocument",
        }:
            raise BadRequest(
                "Recipient has the members KeyEncryptionAlgorithm, AttestationDocument"
            )
        algorithm = value.get("KeyEncryptionAlgorithm", RSAES_OAEP_SHA_256)
        if algorithm != RSAES_OAEP_SHA_256:
            raise BadRequest(f"Recipient.KeyEncryptionAlgorithm must be {RSAES_OAEP_SHA_256}")
        document = value.get("AttestationDocument")
        if document is None:
            raise BadRequest("Recipient.AttestationDocument is required")
        decoded = _base64(document, "Recipient.AttestationDocument")
        if not 1 <= len(decoded) <= MAX_ATTESTATION_DOCUMENT:
            raise BadRequest(
                f"Recipient.AttestationDocument must be 1 to {MAX_ATTESTATION_DOCUMENT} bytes"
            )
        return bundle.read(decoded)

    def number_of_bytes(self, *, key_spec: bool) -> int:
        """``NumberOfBytes``, or (where the operation has it) the length ``KeySpec`` names:
        exactly one of them."""
        count = self.members.get("NumberOfBytes")
        spec = self.members.get("KeySpec") if key_spec else None
        if (count is None) == (spec is None):
            wanted = "exactly one of KeySpec and NumberOfBytes" if key_spec else "NumberOfBytes"
            raise BadRequest(f"{wanted} is required")
        if spec is not None:
            if spec not in KEY_SPECS:
                raise BadRequest(f"KeySpec must be one of {', '.join(KEY_SPECS)}")
            return KEY_SPECS[spec]
        if type(count) is not int or not 1 <= count <= MAX_NUMBER_OF_BYTES:
            raise BadRequest(f"NumberOfBytes must be an integer from 1 to {MAX_NUMBER_OF_BYTES}")
        return count


def parse(op: Operation, body: Any) -> Request:
    """The members of ``body`` for ``op``, refused where keybroker cannot honour them."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - MEMBERS[op] - _COMMON)
    if unknown:
        raise BadRequest(f"{op.value} has no member {', '.join(unknown)[:200]}")
    if body.get("DryRun") not in (None, False):
        raise BadRequest("DryRun is not supported by keybroker")
    grants = body.get("GrantTokens")
    if grants is not None and not (
        isinstance(grants, list) and all(isinstance(g, str) for g in grants)
    ):
        raise BadRequest("GrantTokens must be a list of strings")
    if body.get("EncryptionAlgorithm") not in (None, SYMMETRIC_DEFAULT):
        raise BadRequest(f"EncryptionAlgorithm must be {SYMMETRIC_DEFAULT} for a symmetric key")
    if body.get("CustomKeyStoreId") is not None:
        raise BadRequest("CustomKeyStoreId is not supported: random bytes come from the HSM")
    return Request(body)


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{name} is not standard base64") from None


def answer(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An answer's members as the protocol writes them: blobs as standard base64; the
    broker's own bookkeeping (``envelope_sha256``) left out."""
    written: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "envelope_sha256":
            continue
        written[name] = (
            base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        )
    return written
