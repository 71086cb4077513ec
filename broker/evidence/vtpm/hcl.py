"""The Azure paravisor's (HCL's) attestation report: bytes <-> dataclass, no judgement.

An Azure confidential VM's paravisor writes this report into the vTPM's NV index 0x01400001
at boot (and again when the guest writes new user data to index 0x01400002). Layout, all
integers little-endian (as Microsoft's ``az-cvm-vtpm`` crate reads it):

===========  =====  ==========================================================================
offset       size   field
===========  =====  ==========================================================================
0x000        4      signature ``HCLA``
0x004        4      version (1 on Milan hosts, 2 on Genoa and TDX hosts in the vectors)
0x008        4      report_size: the bytes from 0x000 to the end of the variable data
0x00C        4      request_type (2)
0x010        4      status
0x014        12     reserved
0x020        1184   the hardware report: an SEV-SNP ATTESTATION_REPORT, or a 1024-byte TDX
                    TDREPORT followed by zeros
0x4C0        4      IGVM_REQUEST_DATA.data_size: 20 + variable_data_size
0x4C4        4      version (1)
0x4C8        4      report_type: 2 SEV-SNP, 4 TDX
0x4CC        4      report_data_hash_type: 1 SHA-256, 2 SHA-384, 3 SHA-512
0x4D0        4      variable_data_size
0x4D4        ...    the variable data: the runtime-claims JSON (:mod:`.runtime`)
===========  =====  ==========================================================================

The NV index is larger than the report; what follows it is kept as ``trailing`` (zeros in
every real report). The hardware report's REPORT_DATA starts with the hash of the variable
data, which is how the hardware vouches for it; :mod:`.verify` checks that and the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import MalformedEvidence
from broker.evidence.dcap.reader import ByteReader

SIGNATURE = b"HCLA"
HEADER_SIZE = 0x20
HW_REPORT_SIZE = 1184
REQUEST_DATA_OFFSET = HEADER_SIZE + HW_REPORT_SIZE
REQUEST_DATA_SIZE = 20
VARIABLE_DATA_OFFSET = REQUEST_DATA_OFFSET + REQUEST_DATA_SIZE
TD_REPORT_SIZE = 1024
#: TDREPORT_STRUCT.REPORTMACSTRUCT.REPORTDATA (Intel TDX Module ABI, "REPORTMACSTRUCT"):
#: after REPORTTYPE (4), reserved (12), CPUSVN (16), TEE_TCB_INFO_HASH (48), TEE_INFO_HASH (48).
TD_REPORT_DATA_OFFSET = 128

REPORT_TYPE_SNP = 2
REPORT_TYPE_TDX = 4
REPORT_TYPES = {REPORT_TYPE_SNP: "SEV-SNP", REPORT_TYPE_TDX: "TDX"}
#: IGVM_HASH_TYPE -> hashlib name and digest size.
HASH_TYPES: dict[int, tuple[str, int]] = {1: ("sha256", 32), 2: ("sha384", 48), 3: ("sha512", 64)}
#: Where the paravisor keeps the report, and where the guest writes its user data.
NV_INDEX_REPORT = 0x01400001
NV_INDEX_USER_DATA = 0x01400002


@dataclass(frozen=True, slots=True)
class HclReport:
    version: int
    report_size: int
    request_type: int
    status: int
    reserved: bytes
    hw_report: bytes
    """The 1184-byte hardware area (:meth:`snp_report` / :meth:`td_report`)."""
    data_size: int
    request_version: int
    report_type: int
    hash_type: int
    variable_data: bytes
    trailing: bytes = b""
    """What the NV index holds after ``report_size`` (zeros in every real report)."""

    def to_bytes(self) -> bytes:
        def u32(value: int) -> bytes:
            return value.to_bytes(4, "little")

        return (
            SIGNATURE
            + u32(self.version)
            + u32(self.report_size)
            + u32(self.request_type)
            + u32(self.status)
            + self.reserved
            + self.hw_report
            + u32(self.data_size)
            + u32(self.request_version)
            + u32(self.report_type)
            + u32(self.hash_type)
            + u32(len(self.variable_data))
            + self.variable_data
            + self.trailing
        )

    def snp_report(self) -> bytes:
        """The SEV-SNP ATTESTATION_REPORT the hardware area holds (all 1184 bytes)."""
        return self.hw_report

    def td_report(self) -> bytes:
        """The TDX TDREPORT_STRUCT in the first 1024 bytes of the hardware area."""
        return self.hw_report[:TD_REPORT_SIZE]

    def td_report_data(self) -> bytes:
        return self.hw_report[TD_REPORT_DATA_OFFSET : TD_REPORT_DATA_OFFSET + 64]


def parse_hcl_report(data: bytes) -> HclReport:
    reader = ByteReader(bytes(data), "HCL report")
    if reader.take(4, "signature") != SIGNATURE:
        raise MalformedEvidence(f"HCL report: signature is not {SIGNATURE.decode()!r}")
    version = reader.u32("version")
    report_size = reader.u32("report_size")
    request_type = reader.u32("request_type")
    status = reader.u32("status")
    reserved = reader.take(12, "reserved")
    hw_report = reader.take(HW_REPORT_SIZE, "hardware report")
    data_size = reader.u32("IGVM_REQUEST_DATA.data_size")
    request_version = reader.u32("IGVM_REQUEST_DATA.version")
    report_type = reader.u32("IGVM_REQUEST_DATA.report_type")
    hash_type = reader.u32("IGVM_REQUEST_DATA.report_data_hash_type")
    size = reader.u32("IGVM_REQUEST_DATA.variable_data_size")
    variable = reader.take(size, "variable data")
    return HclReport(
        version, report_size, request_type, status, reserved, hw_report, data_size,
        request_version, report_type, hash_type, variable, reader.rest(),
    )  # fmt: skip
