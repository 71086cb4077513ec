"""A synthetic Azure paravisor: runtime data that lists an AK, and the HCL report whose
hardware report, signed by the synthetic AMD kit (``broker.simulate.snp``) or quoted by the
synthetic Intel kit (``broker.simulate.intel``), carries its hash at VMPL 0, as Azure's
paravisor asks for it.

With a :class:`~broker.simulate.tpm.SoftwareAk` (unit tests) or swtpm's AK (the simulated
guest, ``keybroker_guest.tpm2``) this makes evidence every check of
``broker.evidence.vtpm.verify`` can be driven through; its roots are the kits' insecure ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from broker.evidence.snp.abi import AttestationReport
from broker.evidence.tpm.abi import HASH_NAMES
from broker.evidence.tpm.quote import Quote
from broker.evidence.vtpm.hcl import (
    HASH_TYPES,
    HW_REPORT_SIZE,
    REPORT_TYPE_SNP,
    REPORT_TYPE_TDX,
    REQUEST_DATA_SIZE,
    TD_REPORT_DATA_OFFSET,
    TD_REPORT_SIZE,
    VARIABLE_DATA_OFFSET,
    HclReport,
)
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit

#: What Azure's paravisor reports of the host's configuration (every member it writes).
VM_CONFIGURATION: Mapping[str, Any] = {
    "console-enabled": False,
    "root-cert-thumbprint": "keybroker-synthetic-paravisor-root",
    "secure-boot": True,
    "tpm-enabled": True,
    "tpm-persisted": True,
    "vmUniqueId": "00000000-0000-4000-8000-00000000c0de",
}
#: The measurement the simulated paravisor's SNP report carries.
PARAVISOR_MEASUREMENT = hashlib.sha384(b"keybroker synthetic paravisor v1").digest()
#: Azure's NV index is 2600 bytes; swtpm 0.7 caps an index at 2048 (TPM2_PT_NV_INDEX_MAX),
#: which the simulated guest's report fits.
HCL_NV_SIZE = 2048


def runtime_data(
    ak_jwk: Mapping[str, Any],
    *,
    user_data: bytes = bytes(64),
    vm_configuration: Mapping[str, Any] = VM_CONFIGURATION,
) -> bytes:
    """The runtime data JSON, compact as Azure's paravisor writes it."""
    document = {
        "keys": [dict(ak_jwk)],
        "vm-configuration": dict(vm_configuration),
        "user-data": user_data.hex().upper(),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def hcl_report(
    hardware: bytes,
    runtime: bytes,
    *,
    report_type: int,
    hash_type: int = 1,
    version: int = 2,
    size: int | None = HCL_NV_SIZE,
) -> HclReport:
    """A consistent report around ``hardware`` and ``runtime``, zero-padded to ``size``."""
    report_size = VARIABLE_DATA_OFFSET + len(runtime)
    padding = 0 if size is None else size - report_size
    if padding < 0:
        raise ValueError(f"the report is {report_size} bytes, more than {size}")
    return HclReport(
        version=version,
        report_size=report_size,
        request_type=2,
        status=0,
        reserved=bytes(12),
        hw_report=hardware.ljust(HW_REPORT_SIZE, b"\0"),
        data_size=REQUEST_DATA_SIZE + len(runtime),
        request_version=1,
        report_type=report_type,
        hash_type=hash_type,
        variable_data=runtime,
        trailing=bytes(padding),
    )


def report_data_for(runtime: bytes, hash_type: int = 1) -> bytes:
    """REPORT_DATA as the paravisor asks for it: H(runtime data), zero-padded to 64 bytes."""
    name, _ = HASH_TYPES[hash_type]
    return hashlib.new(name, runtime).digest().ljust(64, b"\0")


def snp_report(kit: SnpKit, runtime: bytes, *, hash_type: int = 1, **overrides: Any) -> bytes:
    """The paravisor's signed SNP report (VMPL 0, its measurement), binding ``runtime``."""
    fields: dict[str, Any] = {
        "report_data": report_data_for(runtime, hash_type),
        "measurement": PARAVISOR_MEASUREMENT,
        "vmpl": 0,
    }
    fields.update(overrides)
    report: AttestationReport = kit.report(**fields)
    return kit.sign(report)


def snp_hcl_report(
    kit: SnpKit, runtime: bytes, *, hash_type: int = 1, size: int | None = HCL_NV_SIZE,
    **overrides: Any,
) -> bytes:  # fmt: skip
    """The whole HCL report of a simulated SEV-SNP CVM."""
    report = snp_report(kit, runtime, hash_type=hash_type, **overrides)
    return hcl_report(
        report, runtime, report_type=REPORT_TYPE_SNP, hash_type=hash_type, size=size
    ).to_bytes()


def td_report(report_data: bytes) -> bytes:
    """A TDREPORT_STRUCT stand-in: only its REPORTDATA is read (a real one is MACed for the
    platform, and the TD quote is what is verified)."""
    report = bytearray(TD_REPORT_SIZE)
    report[TD_REPORT_DATA_OFFSET : TD_REPORT_DATA_OFFSET + 64] = report_data
    return bytes(report)


def tdx_evidence(kit: IntelKit, runtime: bytes, **quote: Any) -> tuple[bytes, bytes]:
    """(HCL report, TD quote) of a simulated TDX CVM: both carry H(runtime data)."""
    report_data = report_data_for(runtime)
    td_quote = kit.tdx_quote(report_data, **quote)
    hcl = hcl_report(td_report(report_data), runtime, report_type=REPORT_TYPE_TDX)
    return hcl.to_bytes(), td_quote


def tpm_quote_json(quote: Quote) -> dict[str, Any]:
    """keybroker's ``tpm_quote`` object."""
    return {
        "message": _b64(quote.message),
        "signature": _b64(quote.signature.to_bytes()),
        "pcrs": {
            HASH_NAMES[bank]: {str(pcr): value.hex() for pcr, value in sorted(values.items())}
            for bank, values in quote.pcrs.items()
        },
    }


def bundle(members: Mapping[str, bytes | Quote | list[bytes]]) -> bytes:
    """keybroker's bundle: bytes in standard base64, the quote as ``tpm_quote``."""
    document: dict[str, Any] = {}
    for name, value in members.items():
        if isinstance(value, Quote):
            document[name] = tpm_quote_json(value)
        elif isinstance(value, list):
            document[name] = [_b64(item) for item in value]
        else:
            document[name] = _b64(value)
    return json.dumps(document).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
