"""SGX claims (CLAIMS.md, sgx section) from a verified quote."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.abi import EnclaveReportBody
from broker.evidence.dcap.claims import flags, intel_claims
from broker.evidence.dcap.verify import VerifiedQuote

# SECS.ATTRIBUTES.FLAGS bits (Intel SDM vol. 3D, "SGX Data Structures", ATTRIBUTES).
ATTRIBUTE_BITS = {
    "init": 0,
    "debug": 1,
    "mode64bit": 2,
    "provision_key": 4,
    "einittoken_key": 5,
    "cet": 6,
    "kss": 7,
    "aex_notify": 10,
}


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
