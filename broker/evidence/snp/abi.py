"""AMD SEV-SNP ATTESTATION_REPORT: bytes <-> frozen dataclasses, and nothing more.

Source: AMD "SEV Secure Nested Paging Firmware ABI Specification" (publication 56860),
§7.3 Attestation, Table "ATTESTATION_REPORT Structure" (Table 22 in rev 1.55, 23 in rev 1.57),
with the "Guest Policy" (§4.3), "TCB_VERSION" and "PLATFORM_INFO" tables it refers to.

This layer decides only whether bytes *are* a report: exact size, a known VERSION, a known
SIGNATURE_ALGO, reserved fields zero (or one, where the spec says so). It never decides
whether a value is acceptable; that is :mod:`broker.evidence.snp.verify` and the policy.
:meth:`AttestationReport.to_bytes` is the exact inverse of :func:`parse_report`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

from broker.errors import MalformedEvidence, UnsupportedEvidence

#: Table "ATTESTATION_REPORT Structure": 0x4A0 bytes, the same for every version.
REPORT_SIZE = 0x4A0
#: The signature covers bytes 0x000..0x29F ("SIGNATURE: signature of bytes 0h to 29Fh").
SIGNED_SIZE = 0x2A0
SIGNATURE_OFFSET = 0x2A0
#: Chapter 10 "ECDSA P-384 with SHA-384" signature format: R and S, each 72 bytes little-endian
#: (zero-extended from 48), then reserved to the end of the 512-byte SIGNATURE field.
ECDSA_COMPONENT_SIZE = 72
#: Table "Signature Algorithm": 1 = ECDSA P-384 with SHA-384, the only one defined.
SIG_ALGO_ECDSA_P384_SHA384 = 1
#: VERSION 2: rev <= 1.54. 3: rev 1.55 adds CPUID_FAM_ID/MOD_ID/STEP at 0x188.
#: 5: rev 1.58 adds LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR at 0x1F8/0x200.
SUPPORTED_VERSIONS = (2, 3, 5)
#: Byte positions of the named parts of a TCB_VERSION (Table "TCB_VERSION Structure"); None
#: marks a reserved byte. Milan and Genoa (family 19h):
TCB_LAYOUT: tuple[str | None, ...] = (
    "bootloader",
    "tee",
    None,
    None,
    None,
    None,
    "snp",
    "microcode",
)
#: Turin (family 1Ah) moves the parts and adds the FMC (first mutable code) SPL in byte 0.
TURIN_TCB_LAYOUT: tuple[str | None, ...] = (
    "fmc",
    "bootloader",
    "tee",
    "snp",
    None,
    None,
    None,
    "microcode",
)

# One struct for the whole report, offsets in the comments (little-endian, packed).
_LAYOUT = struct.Struct(
    "<"
    "I"  # 0x000 VERSION
    "I"  # 0x004 GUEST_SVN
    "Q"  # 0x008 POLICY
    "16s"  # 0x010 FAMILY_ID
    "16s"  # 0x020 IMAGE_ID
    "I"  # 0x030 VMPL
    "I"  # 0x034 SIGNATURE_ALGO
    "8s"  # 0x038 CURRENT_TCB
    "Q"  # 0x040 PLATFORM_INFO
    "I"  # 0x048 AUTHOR_KEY_EN / MASK_CHIP_KEY / SIGNING_KEY (called SIGNER_INFO here)
    "4s"  # 0x04C reserved, MBZ
    "64s"  # 0x050 REPORT_DATA
    "48s"  # 0x090 MEASUREMENT
    "32s"  # 0x0C0 HOST_DATA
    "48s"  # 0x0E0 ID_KEY_DIGEST
    "48s"  # 0x110 AUTHOR_KEY_DIGEST
    "32s"  # 0x140 REPORT_ID
    "32s"  # 0x160 REPORT_ID_MA
    "8s"  # 0x180 REPORTED_TCB
    "3s"  # 0x188 CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (v3+; reserved MBZ in v2)
    "21s"  # 0x18B reserved, MBZ
    "64s"  # 0x1A0 CHIP_ID
    "8s"  # 0x1E0 COMMITTED_TCB
    "3s"  # 0x1E8 CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR
    "1s"  # 0x1EB reserved, MBZ
    "3s"  # 0x1EC COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR
    "1s"  # 0x1EF reserved, MBZ
    "8s"  # 0x1F0 LAUNCH_TCB
    "168s"  # 0x1F8 v5: LAUNCH_MIT_VECTOR, CURRENT_MIT_VECTOR, reserved; v2/v3: reserved, MBZ
    "72s"  # 0x2A0 SIGNATURE.R
    "72s"  # 0x2E8 SIGNATURE.S
    "368s"  # 0x330 SIGNATURE reserved, MBZ
)
if _LAYOUT.size != REPORT_SIZE:  # pragma: no cover - a typo in the format above
    raise RuntimeError(f"ATTESTATION_REPORT layout is {_LAYOUT.size} bytes, not {REPORT_SIZE}")

_MIT_VECTORS = struct.Struct("<QQ")  # 0x1F8 LAUNCH_MIT_VECTOR, 0x200 CURRENT_MIT_VECTOR (v5)


def _mbz(value: bytes, offset: int, what: str = "reserved") -> None:
    if any(value):
        end = offset + len(value) - 1
        raise MalformedEvidence(
            f"ATTESTATION_REPORT {what} bytes {offset:#05x}..{end:#05x} must be zero, "
            f"found {value.hex()}"
        )


def _decode_flags(value: int, table: tuple[tuple[str, int], ...]) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for name, bit in table}


def _encode_flags(obj: Any, table: tuple[tuple[str, int], ...]) -> int:
    return sum(1 << bit for name, bit in table if getattr(obj, name))


def _mask(table: tuple[tuple[str, int], ...]) -> int:
    return sum(1 << bit for _, bit in table)


# --- POLICY (§4.3, Table "Guest Policy Structure") -----------------------------------------

_POLICY_FLAGS: tuple[tuple[str, int], ...] = (
    ("smt", 16),
    ("migrate_ma", 18),
    ("debug", 19),
    ("single_socket", 20),
    ("cxl_allow", 21),
    ("mem_aes_256_xts", 22),
    ("rapl_dis", 23),
    ("ciphertext_hiding", 24),
    ("page_swap_disable", 25),
)
_POLICY_RESERVED_ONE = 1 << 17  # bit 17: reserved, "must be one"
_POLICY_KNOWN = 0xFFFF | _mask(_POLICY_FLAGS) | _POLICY_RESERVED_ONE  # bits 63:26 MBZ


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool = False
    debug: bool = False
    single_socket: bool = False
    cxl_allow: bool = False
    mem_aes_256_xts: bool = False
    rapl_dis: bool = False
    ciphertext_hiding: bool = False
    page_swap_disable: bool = False

    @classmethod
    def from_int(cls, value: int) -> GuestPolicy:
        if not value & _POLICY_RESERVED_ONE:
            raise MalformedEvidence(f"POLICY {value:#x}: bit 17 is reserved and must be one")
        if value & ~_POLICY_KNOWN:
            raise MalformedEvidence(
                f"POLICY {value:#x}: reserved bits 63:26 must be zero, found {value >> 26:#x}"
            )
        return cls(
            abi_minor=value & 0xFF,
            abi_major=value >> 8 & 0xFF,
            **_decode_flags(value, _POLICY_FLAGS),
        )

    def to_int(self) -> int:
        return (
            (self.abi_minor & 0xFF)
            | (self.abi_major & 0xFF) << 8
            | _POLICY_RESERVED_ONE
            | _encode_flags(self, _POLICY_FLAGS)
        )


# --- PLATFORM_INFO (Table "PLATFORM_INFO Field") -------------------------------------------

_PLATFORM_FLAGS: tuple[tuple[str, int], ...] = (
    ("smt_enabled", 0),
    ("tsme_enabled", 1),
    ("ecc_enabled", 2),
    ("rapl_disabled", 3),
    ("ciphertext_hiding_enabled", 4),
    ("alias_check_complete", 5),  # v3+ firmware: the BadRAM alias check (AMD-SB-3015) ran
    ("tio_enabled", 7),  # bit 6 is reserved
)


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    smt_enabled: bool = False
    tsme_enabled: bool = False
    ecc_enabled: bool = False
    rapl_disabled: bool = False
    ciphertext_hiding_enabled: bool = False
    alias_check_complete: bool = False
    tio_enabled: bool = False

    @classmethod
    def from_int(cls, value: int) -> PlatformInfo:
        if value & ~_mask(_PLATFORM_FLAGS):
            raise MalformedEvidence(
                f"PLATFORM_INFO {value:#x}: reserved bits must be zero "
                f"(known bits {_mask(_PLATFORM_FLAGS):#x})"
            )
        return cls(**_decode_flags(value, _PLATFORM_FLAGS))

    def to_int(self) -> int:
        return _encode_flags(self, _PLATFORM_FLAGS)


# --- 0x048: AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (bit 1), SIGNING_KEY (bits 4:2) -----------


class SigningKey(IntEnum):
    """SIGNING_KEY encodings; 2..6 are reserved."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True, slots=True)
class SignerInfo:
    signing_key: SigningKey = SigningKey.VCEK
    mask_chip_key: bool = False
    author_key_en: bool = False

    @classmethod
    def from_int(cls, value: int) -> SignerInfo:
        if value >> 5:
            raise MalformedEvidence(
                f"SIGNER_INFO {value:#x} (offset 0x048): reserved bits 31:5 must be zero"
            )
        key = value >> 2 & 0b111
        try:
            signing_key = SigningKey(key)
        except ValueError:
            raise MalformedEvidence(
                f"SIGNER_INFO.SIGNING_KEY {key} is reserved (0, 1 or 7)"
            ) from None
        return cls(signing_key, bool(value & 0b10), bool(value & 0b1))

    def to_int(self) -> int:
        return int(self.signing_key) << 2 | int(self.mask_chip_key) << 1 | int(self.author_key_en)


# --- TCB_VERSION ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcbParts:
    """The named security patch levels of a TCB_VERSION; ``fmc`` exists on Turin only."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """A TCB_VERSION as the report carries it: 8 bytes whose layout depends on the product."""

    raw: bytes

    @property
    def value(self) -> int:
        """The 64-bit little-endian value (how AMD tools print it, e.g. 0x7308000000000003)."""
        return int.from_bytes(self.raw, "little")

    def parts(self, turin: bool) -> TcbParts:
        layout = TURIN_TCB_LAYOUT if turin else TCB_LAYOUT
        named = {name: self.raw[i] for i, name in enumerate(layout) if name is not None}
        return TcbParts(**named)

    @classmethod
    def compose(cls, parts: TcbParts, turin: bool) -> TcbVersion:
        """The TCB_VERSION of ``parts`` with every reserved byte zero."""
        layout = TURIN_TCB_LAYOUT if turin else TCB_LAYOUT
        if turin != (parts.fmc is not None):
            raise ValueError("fmc is given exactly for Turin TCB versions")
        raw = bytes(0 if name is None else getattr(parts, name) for name in layout)
        return cls(raw)


# --- The report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cpuid:
    """CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (combined extended+base values), v3+."""

    family: int
    model: int
    stepping: int


@dataclass(frozen=True, slots=True)
class FirmwareVersion:
    major: int
    minor: int
    build: int


@dataclass(frozen=True, slots=True)
class EcdsaSignature:
    """R and S of the ECDSA P-384 signature, as integers (stored little-endian)."""

    r: int
    s: int


@dataclass(frozen=True, slots=True)
class AttestationReport:
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    signer_info: SignerInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid: Cpuid | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: FirmwareVersion
    committed_version: FirmwareVersion
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature: EcdsaSignature

    def to_bytes(self) -> bytes:
        """The exact ABI encoding; raises ``ValueError`` for values no report can hold."""
        self._check_encodable()
        if self.version >= 5:
            tail = _MIT_VECTORS.pack(self.launch_mit_vector, self.current_mit_vector)
        else:
            tail = b""
        cpuid = self.cpuid
        return _LAYOUT.pack(
            self.version,
            self.guest_svn,
            self.policy.to_int(),
            self.family_id,
            self.image_id,
            self.vmpl,
            self.signature_algo,
            self.current_tcb.raw,
            self.platform_info.to_int(),
            self.signer_info.to_int(),
            b"",
            self.report_data,
            self.measurement,
            self.host_data,
            self.id_key_digest,
            self.author_key_digest,
            self.report_id,
            self.report_id_ma,
            self.reported_tcb.raw,
            b"" if cpuid is None else bytes((cpuid.family, cpuid.model, cpuid.stepping)),
            b"",
            self.chip_id,
            self.committed_tcb.raw,
            _version_bytes(self.current_version),
            b"",
            _version_bytes(self.committed_version),
            b"",
            self.launch_tcb.raw,
            tail,
            self.signature.r.to_bytes(ECDSA_COMPONENT_SIZE, "little"),
            self.signature.s.to_bytes(ECDSA_COMPONENT_SIZE, "little"),
            b"",
        )

    def signed_bytes(self) -> bytes:
        """Bytes 0x000..0x29F, the part the signature covers."""
        return self.to_bytes()[:SIGNED_SIZE]

    def _check_encodable(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"VERSION {self.version} is not one of {SUPPORTED_VERSIONS}")
        if self.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
            raise ValueError(f"SIGNATURE_ALGO {self.signature_algo} has no known layout")
        if (self.cpuid is None) != (self.version < 3):
            raise ValueError("cpuid is present exactly in version 3+ reports")
        mit = (self.launch_mit_vector, self.current_mit_vector)
        if self.version >= 5 and None in mit:
            raise ValueError("version 5 reports carry both mitigation vectors")
        if self.version < 5 and mit != (None, None):
            raise ValueError("mitigation vectors exist in version 5+ reports only")
        for field in fields(self):
            value = getattr(self, field.name)
            size = BYTE_FIELD_SIZES.get(field.name)
            if size is not None and len(value) != size:
                raise ValueError(f"{field.name} is {len(value)} bytes, not {size}")
            if isinstance(value, TcbVersion) and len(value.raw) != 8:
                raise ValueError(f"{field.name} is {len(value.raw)} bytes, not 8")
        for part in (self.signature.r, self.signature.s):
            if not 0 <= part < 1 << (8 * ECDSA_COMPONENT_SIZE):
                raise ValueError("signature component does not fit in 72 bytes")


#: The fixed-size byte fields of the report and their sizes.
BYTE_FIELD_SIZES = {
    "family_id": 16,
    "image_id": 16,
    "report_data": 64,
    "measurement": 48,
    "host_data": 32,
    "id_key_digest": 48,
    "author_key_digest": 48,
    "report_id": 32,
    "report_id_ma": 32,
    "chip_id": 64,
}


def _version_bytes(version: FirmwareVersion) -> bytes:
    # 0x1E8/0x1EC: BUILD, MINOR, MAJOR in that byte order.
    return bytes((version.build, version.minor, version.major))


def _firmware_version(raw: bytes) -> FirmwareVersion:
    return FirmwareVersion(major=raw[2], minor=raw[1], build=raw[0])


def parse_report(data: bytes) -> AttestationReport:
    """Decode one ATTESTATION_REPORT.

    ``MalformedEvidence`` for a wrong size or a non-zero reserved field;
    ``UnsupportedEvidence`` for a VERSION or SIGNATURE_ALGO this parser does not know.
    """
    if len(data) != REPORT_SIZE:
        raise MalformedEvidence(
            f"ATTESTATION_REPORT is {len(data)} bytes, the ABI size is {REPORT_SIZE}"
        )
    (
        version,
        guest_svn,
        policy,
        family_id,
        image_id,
        vmpl,
        signature_algo,
        current_tcb,
        platform_info,
        signer_info,
        reserved_04c,
        report_data,
        measurement,
        host_data,
        id_key_digest,
        author_key_digest,
        report_id,
        report_id_ma,
        reported_tcb,
        cpuid,
        reserved_18b,
        chip_id,
        committed_tcb,
        current_version,
        reserved_1eb,
        committed_version,
        reserved_1ef,
        launch_tcb,
        tail,
        sig_r,
        sig_s,
        sig_reserved,
    ) = _LAYOUT.unpack(data)
    if version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise UnsupportedEvidence(f"ATTESTATION_REPORT.VERSION {version} is not one of {known}")
    if signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise UnsupportedEvidence(
            f"SIGNATURE_ALGO {signature_algo} is not 1 (ECDSA P-384 with SHA-384)"
        )
    _mbz(reserved_04c, 0x04C)
    if version < 3:
        _mbz(cpuid, 0x188, "reserved (CPUID in v3+)")
    _mbz(reserved_18b, 0x18B)
    _mbz(reserved_1eb, 0x1EB)
    _mbz(reserved_1ef, 0x1EF)
    launch_mit: int | None = None
    current_mit: int | None = None
    if version >= 5:
        launch_mit, current_mit = _MIT_VECTORS.unpack_from(tail)
        _mbz(tail[_MIT_VECTORS.size :], 0x1F8 + _MIT_VECTORS.size)
    else:
        _mbz(tail, 0x1F8)
    _mbz(sig_reserved, SIGNATURE_OFFSET + 2 * ECDSA_COMPONENT_SIZE, "SIGNATURE reserved")
    return AttestationReport(
        version=version,
        guest_svn=guest_svn,
        policy=GuestPolicy.from_int(policy),
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb=TcbVersion(current_tcb),
        platform_info=PlatformInfo.from_int(platform_info),
        signer_info=SignerInfo.from_int(signer_info),
        report_data=report_data,
        measurement=measurement,
        host_data=host_data,
        id_key_digest=id_key_digest,
        author_key_digest=author_key_digest,
        report_id=report_id,
        report_id_ma=report_id_ma,
        reported_tcb=TcbVersion(reported_tcb),
        cpuid=None if version < 3 else Cpuid(cpuid[0], cpuid[1], cpuid[2]),
        chip_id=chip_id,
        committed_tcb=TcbVersion(committed_tcb),
        current_version=_firmware_version(current_version),
        committed_version=_firmware_version(committed_version),
        launch_tcb=TcbVersion(launch_tcb),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        signature=EcdsaSignature(
            r=int.from_bytes(sig_r, "little"), s=int.from_bytes(sig_s, "little")
        ),
    )
