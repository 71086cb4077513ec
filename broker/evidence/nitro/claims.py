"""Normalised claims of a verified Nitro attestation document (CLAIMS.md, nitro section).

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

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.nitro.abi import AttestationDocument
from broker.evidence.trust import TrustedRoot
from broker.timeutil import from_unix_ms

SIGNER_VENDOR = "aws"
SIGNER_KEY = "nitro"

#: PCR0 (enclave image), PCR1 (kernel and bootstrap), PCR2 (application): AWS User Guide,
#: "Where to get an enclave's measurements". An enclave started in debug mode reports them all
#: as zeros, because its memory is readable from the parent instance.
DEBUG_PCRS = (0, 1, 2)


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
