"""An SEV-SNP report as virtee/sev 6.3 serialises it (what guest-components' SNP attester
sends inside ``SnpEvidence``), written from the report's bytes by the offsets of AMD's
ATTESTATION_REPORT table (SEV-SNP Firmware ABI, publication 56860, §7.3)."""

from __future__ import annotations

import struct
from typing import Any

# (member, offset, size) of the byte-array members.
_ARRAYS = (
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("report_data", 0x050, 64),
    ("measurement", 0x090, 48),
    ("host_data", 0x0C0, 32),
    ("id_key_digest", 0x0E0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("chip_id", 0x1A0, 64),
)
TURIN_FAMILY = 0x1A


def _u32(raw: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", raw, offset)[0])


def _u64(raw: bytes, offset: int) -> int:
    return int(struct.unpack_from("<Q", raw, offset)[0])


def _tcb(raw: bytes, offset: int, turin: bool) -> dict[str, Any]:
    b = raw[offset : offset + 8]
    if turin:  # FMC, BOOT_LOADER, TEE, SNP, reserved x3, MICROCODE
        return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
    # BOOT_LOADER, TEE, reserved x4, SNP, MICROCODE
    return {"fmc": None, "bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def _version(raw: bytes, offset: int) -> dict[str, int]:
    build, minor, major = raw[offset : offset + 3]
    return {"major": major, "minor": minor, "build": build}


def serde_report(raw: bytes) -> dict[str, Any]:
    """The serde JSON object of a raw 1184-byte report (versions 2, 3 and 5)."""
    if len(raw) != 0x4A0:
        raise ValueError("an ATTESTATION_REPORT is 1184 bytes")
    version = _u32(raw, 0x000)
    cpuid = None if version < 3 else tuple(raw[0x188:0x18B])
    turin = cpuid is not None and cpuid[0] == TURIN_FAMILY
    document: dict[str, Any] = {
        "version": version,
        "guest_svn": _u32(raw, 0x004),
        "policy": _u64(raw, 0x008),
        "family_id": None,
        "image_id": None,
        "vmpl": _u32(raw, 0x030),
        "sig_algo": _u32(raw, 0x034),
        "current_tcb": _tcb(raw, 0x038, turin),
        "plat_info": _u64(raw, 0x040),
        "key_info": _u32(raw, 0x048),
    }
    for name, offset, size in _ARRAYS:
        document[name] = list(raw[offset : offset + size])
    document.update(
        {
            "reported_tcb": _tcb(raw, 0x180, turin),
            "cpuid_fam_id": None if cpuid is None else cpuid[0],
            "cpuid_mod_id": None if cpuid is None else cpuid[1],
            "cpuid_step": None if cpuid is None else cpuid[2],
            "committed_tcb": _tcb(raw, 0x1E0, turin),
            "current": _version(raw, 0x1E8),
            "committed": _version(raw, 0x1EC),
            "launch_tcb": _tcb(raw, 0x1F0, turin),
            "launch_mit_vector": _u64(raw, 0x1F8) if version >= 5 else None,
            "current_mit_vector": _u64(raw, 0x200) if version >= 5 else None,
            "signature": {"r": list(raw[0x2A0:0x2E8]), "s": list(raw[0x2E8:0x330])},
        }
    )
    return document


def snp_evidence(raw: bytes, certificates: dict[str, bytes] | None) -> dict[str, Any]:
    """``SnpEvidence``: the report and the host's certificate table (type name -> DER)."""
    chain = None
    if certificates is not None:
        chain = [{"cert_type": kind, "data": list(der)} for kind, der in certificates.items()]
    return {"attestation_report": serde_report(raw), "cert_chain": chain}
