"""Normalised claims of a verified Nitro attestation document (:data:`CLAIMS`, listed in
docs/claims.md).

Fields: ``module_id``, ``timestamp`` (ms since the Unix epoch), ``digest``, ``pcrs`` (index as a
decimal string -> lowercase hex, so that policies address ``pcrs.0``), ``public_key``,
``user_data``, ``nonce`` (lowercase hex, or null when absent). ``Claims.report_data`` is None:
Nitro binds the challenge through ``nonce`` and the tee key through ``public_key``
(``binding.py``).

The signer is AWS as *infrastructure provider*: the root of trust is the Nitro Hypervisor and
AWS's own PKI, not a CPU vendor, so trusting a Nitro document means trusting the operator
(ARCHITECTURE §2).
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.evidence.claims import (
    INDEX,
    ClaimDefinition,
    Claims,
    Signer,
    SignerOrigin,
    Tee,
    hex_claim,
    integer_claim,
    map_claim,
    string_claim,
    within,
)
from broker.evidence.nitro.abi import PCR_INDEX_MAX, AttestationDocument
from broker.evidence.trust import TrustedRoot
from broker.timeutil import from_unix_ms

SIGNER_VENDOR = "aws"
SIGNER_KEY = "nitro"

#: PCR0 (enclave image), PCR1 (kernel and bootstrap), PCR2 (application): AWS User Guide,
#: "Where to get an enclave's measurements". An enclave started in debug mode reports them all
#: as zeros, because its memory is readable from the parent instance.
DEBUG_PCRS = (0, 1, 2)


#: Every claim :func:`to_claims` produces (AWS Nitro Enclaves, attestation document fields).
CLAIMS: tuple[ClaimDefinition, ...] = (
    string_claim("module_id", "the enclave's identifier (i-020b6af9246d90e92-enc0183d09086c24190)"),
    integer_claim(
        "timestamp", "when the document was made, ms since the Unix epoch (evidence_time)"
    ),
    string_claim("digest", "the digest function of the PCRs: SHA384, the only one AWS defines"),
    *within(
        map_claim(
            "pcrs", PCR_INDEX_MAX + 1, "the platform configuration registers the document has"
        ),
        hex_claim(
            INDEX,
            48,
            "PCR N: 0 enclave image, 1 kernel and bootstrap, 2 application, 3 IAM role of the "
            "parent instance, 4 parent instance ID, 8 enclave image signing certificate",
        ),
    ),
    hex_claim(
        "public_key",
        None,
        "a public key the enclave chose (keybroker binds the tee key here); null when absent",
        nullable=True,
    ),
    hex_claim("user_data", None, "data the enclave chose; null when absent", nullable=True),
    hex_claim(
        "nonce",
        None,
        "a nonce the enclave was given (keybroker binds its challenge here); null when absent",
        nullable=True,
    ),
)


def is_debug(pcrs: Mapping[int, bytes]) -> bool:
    """True when PCR0, PCR1 and PCR2 are present and all-zero (a debug-mode enclave)."""
    return all(index in pcrs and not any(pcrs[index]) for index in DEBUG_PCRS)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def to_claims(document: AttestationDocument, root: TrustedRoot) -> Claims:
    """Claims of a document that ``verify.verify_document`` accepted, ending in ``root``."""
    return Claims(
        tee=Tee.NITRO,
        signer=Signer(
            vendor=SIGNER_VENDOR,
            origin=SignerOrigin.INFRASTRUCTURE_PROVIDER,
            root=root.name,
            key=SIGNER_KEY,
        ),
        debug=is_debug(document.pcrs),
        fields={
            "module_id": document.module_id,
            "timestamp": document.timestamp,
            "digest": document.digest,
            "pcrs": {str(index): pcr.hex() for index, pcr in document.pcrs.items()},
            "public_key": _hex(document.public_key),
            "user_data": _hex(document.user_data),
            "nonce": _hex(document.nonce),
        },
        report_data=None,
        evidence_time=from_unix_ms(document.timestamp),
    )
