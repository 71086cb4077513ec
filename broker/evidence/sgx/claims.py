"""SGX claims from a verified quote (:data:`CLAIMS`, listed in docs/claims.md; the quote and
platform claims of :mod:`broker.evidence.dcap.claims` come with them)."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import (
    ClaimDefinition,
    Claims,
    Tee,
    hex_claim,
    integer_claim,
    object_claim,
    within,
)
from broker.evidence.dcap.abi import EnclaveReportBody
from broker.evidence.dcap.claims import (
    FlagTable,
    bit_positions,
    flag_claims,
    flags,
    intel_claims,
)
from broker.evidence.dcap.verify import VerifiedQuote

# SECS.ATTRIBUTES.FLAGS bits (Intel SDM vol. 3D, "SGX Data Structures", ATTRIBUTES).
_ATTRIBUTE_FLAGS: FlagTable = (
    ("init", 0, "INIT: the enclave was initialised by EINIT"),
    ("debug", 1, "DEBUG: a debug enclave, whose memory the host can read (= debug)"),
    ("mode64bit", 2, "MODE64BIT: a 64-bit enclave"),
    ("provision_key", 4, "PROVISIONKEY: the enclave may get the provisioning key"),
    ("einittoken_key", 5, "EINITTOKEN_KEY: the enclave may get the EINIT token key"),
    ("cet", 6, "CET: the enclave uses control-flow enforcement"),
    ("kss", 7, "KSS: key separation and sharing is enabled"),
    ("aex_notify", 10, "AEXNOTIFY: the enclave may receive AEX notifications"),
)
ATTRIBUTE_BITS = bit_positions(_ATTRIBUTE_FLAGS)

#: Every claim :func:`sgx_claims` produces besides the dcap ones, in report body order.
CLAIMS: tuple[ClaimDefinition, ...] = (
    hex_claim("mr_enclave", 32, "MRENCLAVE: measurement of the enclave's code and initial data"),
    hex_claim("mr_signer", 32, "MRSIGNER: SHA-256 of the public key that signed the enclave"),
    integer_claim("isv_prod_id", "ISVPRODID: the product ID the enclave's author assigned"),
    integer_claim("isv_svn", "ISVSVN: the security version the enclave's author assigned"),
    integer_claim("config_svn", "CONFIGSVN: the configuration's security version (KSS)"),
    hex_claim("config_id", 64, "CONFIGID: the configuration the enclave was loaded with (KSS)"),
    *within(
        object_claim("attributes", "SECS.ATTRIBUTES, by bit, and XFRM"),
        *flag_claims(_ATTRIBUTE_FLAGS),
        hex_claim("xfrm", 8, "XFRM: the extended CPU features (XCR0) the enclave uses"),
        hex_claim("raw", 16, "the 16 ATTRIBUTES bytes as the quote carries them"),
    ),
    hex_claim(
        "report_data", 64, "the 64 bytes the enclave chose (keybroker binds its challenge here)"
    ),
)


def enclave_attributes(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = flags(int.from_bytes(raw[:8], "little"), ATTRIBUTE_BITS)
    decoded["xfrm"] = raw[8:].hex()
    decoded["raw"] = raw.hex()
    return decoded


def sgx_claims(result: VerifiedQuote) -> Claims:
    body = result.quote.body
    if not isinstance(body, EnclaveReportBody):
        raise TypeError("sgx_claims needs a quote with an SGX enclave report body")
    attributes = enclave_attributes(body.attributes)
    fields: dict[str, Any] = {
        "mr_enclave": body.mr_enclave.hex(),
        "mr_signer": body.mr_signer.hex(),
        "isv_prod_id": body.isv_prod_id,
        "isv_svn": body.isv_svn,
        "config_svn": body.config_svn,
        "config_id": body.config_id.hex(),
        "attributes": attributes,
        "report_data": body.report_data.hex(),
    }
    return intel_claims(
        Tee.SGX, result, fields, debug=bool(attributes["debug"]), report_data=body.report_data
    )
