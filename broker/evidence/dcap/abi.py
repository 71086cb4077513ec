"""Intel DCAP ECDSA quotes (v3, v4, v5): bytes <-> frozen dataclasses, with no judgement.

Layouts (all integers little-endian):

* quote v3: Intel SGX ECDSA Quote Library API, appendix A "Quote Format" (SGX only);
* quote v4: Intel TDX DCAP Quoting Library API, appendix A.3 (SGX enclave report or TD
  report 1.0 body, chosen by ``header.tee_type``), with the QE report nested inside
  certification data of type 6;
* quote v5: the same document's appendix A.4 (TDX 1.5): a 6-byte body descriptor (TYPE u16,
  SIZE u32) precedes the body; TYPE 1 SGX enclave report, 2 TD report 1.0, 3 TD report 1.5.

The quote signature covers ``header || [v5 body descriptor] || body`` (:meth:`Quote.signed_bytes`).
Bytes after the ECDSA signature data are tolerated only when all zero (configfs-tsm pads GCE
quotes to 8000 bytes); they are kept in :attr:`Quote.padding` so that ``to_bytes`` is the
exact inverse of :func:`parse_quote`.

Only the ECDSA-256-with-P-256 attestation key type (2) has a defined signature-data layout
here; other key types are :class:`UnsupportedEvidence`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.dcap.reader import ByteReader

HEADER_SIZE = 48
ENCLAVE_REPORT_SIZE = 384
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
SIGNATURE_SIZE = 64  # ECDSA P-256 r || s, 32 bytes each, big-endian
PUBLIC_KEY_SIZE = 64  # P-256 point x || y, 32 bytes each, big-endian
BODY_DESCRIPTOR_SIZE = 6  # v5: TYPE u16 + SIZE u32

ATTESTATION_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081

# v5 body descriptor TYPE values (TDX DCAP Quoting Library API, A.4).
BODY_TYPE_SGX = 1
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3

# Certification data types (SGX ECDSA Quote Library API, "Certification Data").
CERT_PPID_CLEARTEXT = 1
CERT_PPID_RSA2048 = 2
CERT_PPID_RSA3072 = 3
CERT_PCK_LEAF = 4
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
CERT_PLATFORM_MANIFEST = 7

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")


class _FixedStruct:
    """A fixed-size record described by ``_LAYOUT``: (field, size, is little-endian int)."""

    _LAYOUT: ClassVar[tuple[tuple[str, int, bool], ...]]
    SIZE: ClassVar[int]

    def __post_init__(self) -> None:
        # Constructed by code (the simulator) as well as by the parser: a wrong length would
        # make to_bytes produce a different layout, so refuse it at construction.
        for name, size, is_int in self._LAYOUT:
            value = getattr(self, name)
            if is_int:
                if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
                    raise ValueError(f"{type(self).__name__}.{name} must fit in {size} bytes")
            elif not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{type(self).__name__}.{name} must be {size} bytes")

    def to_bytes(self) -> bytes:
        packer, _ = _layout(type(self))
        return packer.pack(*(getattr(self, name) for name, _, _ in self._LAYOUT))


_Record = TypeVar("_Record", bound=_FixedStruct)
_Setter = Callable[[object, object], None]
_LAYOUTS: dict[type[_FixedStruct], tuple[struct.Struct, tuple[_Setter, ...]]] = {}
_INT_FORMATS = {2: "H", 4: "I"}


def _layout(cls: type[_FixedStruct]) -> tuple[struct.Struct, tuple[_Setter, ...]]:
    """``cls``'s layout as a ``struct`` format (little-endian integers, byte strings), and the
    setters of its slots in that order."""
    found = _LAYOUTS.get(cls)
    if found is None:
        names = [name for name, _, _ in cls._LAYOUT]
        packer = struct.Struct(
            "<"
            + "".join(
                _INT_FORMATS[size] if is_int else f"{size}s" for _, size, is_int in cls._LAYOUT
            )
        )
        if packer.size != cls.SIZE or [f.name for f in fields(cls)] != names:  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}: _LAYOUT does not describe the record")
        found = _LAYOUTS[cls] = (packer, tuple(getattr(cls, name).__set__ for name in names))
    return found


def parse_record(cls: type[_Record], data: bytes) -> _Record:
    """The fixed-size record ``cls`` (header or report body) from exactly its bytes.

    Each field is unpacked at its size, which is all that ``__post_init__`` would check, so
    the record's slots are filled directly, without it: three records a quote, each check
    costing more than the unpacking (``to_bytes`` is still the exact inverse).
    """
    if len(data) != cls.SIZE:
        raise MalformedEvidence(f"{cls.__name__} is {len(data)} bytes, expected {cls.SIZE}")
    packer, setters = _layout(cls)
    record = object.__new__(cls)
    for setter, value in zip(setters, packer.unpack(data), strict=True):
        setter(record, value)
    return record


@dataclass(frozen=True, slots=True)
class QuoteHeader(_FixedStruct):
    """The 48-byte quote header (v3: appendix A.1; v4/v5: A.3.1)."""

    version: int
    attestation_key_type: int
    tee_type: int
    """v3: reserved (zero); v4/v5: 0x00 SGX, 0x81 TDX."""
    qe_svn: int
    """v3 QE_SVN; reserved (zero in TDX quotes) from v4 on."""
    pce_svn: int
    """v3 PCE_SVN; reserved (zero in TDX quotes) from v4 on."""
    qe_vendor_id: bytes
    user_data: bytes

    _LAYOUT: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        ("version", 2, True),  # offset 0
        ("attestation_key_type", 2, True),  # 2
        ("tee_type", 4, True),  # 4
        ("qe_svn", 2, True),  # 8
        ("pce_svn", 2, True),  # 10
        ("qe_vendor_id", 16, False),  # 12
        ("user_data", 20, False),  # 28
    )
    SIZE: ClassVar[int] = HEADER_SIZE


@dataclass(frozen=True, slots=True)
class EnclaveReportBody(_FixedStruct):
    """SGX REPORTBODY (384 bytes): the ISV enclave's report and the QE report alike.

    Offsets from the SGX ECDSA Quote Library API, "Enclave Report Body" (A.4).
    """

    cpu_svn: bytes
    misc_select: int
    reserved1: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes

    _LAYOUT: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        ("cpu_svn", 16, False),  # 0
        ("misc_select", 4, True),  # 16
        ("reserved1", 12, False),  # 20
        ("isv_ext_prod_id", 16, False),  # 32
        ("attributes", 16, False),  # 48: flags u64 || xfrm u64
        ("mr_enclave", 32, False),  # 64
        ("reserved2", 32, False),  # 96
        ("mr_signer", 32, False),  # 128
        ("reserved3", 32, False),  # 160
        ("config_id", 64, False),  # 192
        ("isv_prod_id", 2, True),  # 256
        ("isv_svn", 2, True),  # 258
        ("config_svn", 2, True),  # 260
        ("reserved4", 42, False),  # 262
        ("isv_family_id", 16, False),  # 304
        ("report_data", 64, False),  # 320
    )
    SIZE: ClassVar[int] = ENCLAVE_REPORT_SIZE


_TD10_LAYOUT: tuple[tuple[str, int, bool], ...] = (
    ("tee_tcb_svn", 16, False),  # 0
    ("mr_seam", 48, False),  # 16
    ("mr_signer_seam", 48, False),  # 64
    ("seam_attributes", 8, False),  # 112
    ("td_attributes", 8, False),  # 120
    ("xfam", 8, False),  # 128
    ("mr_td", 48, False),  # 136
    ("mr_config_id", 48, False),  # 184
    ("mr_owner", 48, False),  # 232
    ("mr_owner_config", 48, False),  # 280
    ("rtmr0", 48, False),  # 328
    ("rtmr1", 48, False),  # 376
    ("rtmr2", 48, False),  # 424
    ("rtmr3", 48, False),  # 472
    ("report_data", 64, False),  # 520
)


@dataclass(frozen=True, slots=True)
class TdReportBody10(_FixedStruct):
    """TD report body for TDX 1.0 (584 bytes; TDX DCAP Quoting Library API A.3.2)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes

    _LAYOUT: ClassVar[tuple[tuple[str, int, bool], ...]] = _TD10_LAYOUT
    SIZE: ClassVar[int] = TD_REPORT10_SIZE

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)


@dataclass(frozen=True, slots=True)
class TdReportBody15(TdReportBody10):
    """TD report body for TDX 1.5 (648 bytes; A.4.2): adds TEE_TCB_SVN2 and MRSERVICETD."""

    tee_tcb_svn2: bytes
    mr_service_td: bytes

    _LAYOUT: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        *_TD10_LAYOUT,
        ("tee_tcb_svn2", 16, False),  # 584
        ("mr_service_td", 48, False),  # 600
    )
    SIZE: ClassVar[int] = TD_REPORT15_SIZE


QuoteBody = EnclaveReportBody | TdReportBody10 | TdReportBody15

_BODY_BY_TYPE: dict[int, type[EnclaveReportBody] | type[TdReportBody10]] = {
    BODY_TYPE_SGX: EnclaveReportBody,
    BODY_TYPE_TD10: TdReportBody10,
    BODY_TYPE_TD15: TdReportBody15,
}


@dataclass(frozen=True, slots=True)
class CertificationData:
    """Certification data: TYPE u16, SIZE u32, then SIZE bytes (type 5: PEM PCK chain)."""

    type: int
    data: bytes

    def to_bytes(self) -> bytes:
        return self.type.to_bytes(2, "little") + len(self.data).to_bytes(4, "little") + self.data

    @classmethod
    def read(cls, reader: ByteReader, what: str) -> CertificationData:
        cert_type = reader.u16(f"{what}.type")
        size = reader.u32(f"{what}.size")
        return cls(type=cert_type, data=reader.take(size, f"{what}.data"))


@dataclass(frozen=True, slots=True)
class QeReportCertificationData:
    """The Quoting Enclave's report, its PCK signature, QE authentication data and the
    certification data that leads to the PCK (inline in v3; certification data type 6 in
    v4/v5)."""

    qe_report: EnclaveReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.qe_report.to_bytes(),
                self.qe_report_signature,
                len(self.qe_auth_data).to_bytes(2, "little"),
                self.qe_auth_data,
                self.certification_data.to_bytes(),
            )
        )

    @classmethod
    def read(cls, reader: ByteReader) -> QeReportCertificationData:
        qe_report = parse_record(EnclaveReportBody, reader.take(ENCLAVE_REPORT_SIZE, "qe_report"))
        signature = reader.take(SIGNATURE_SIZE, "qe_report_signature")
        auth_size = reader.u16("qe_auth_data.size")
        auth = reader.take(auth_size, "qe_auth_data")
        cert = CertificationData.read(reader, "certification_data")
        return cls(qe_report, signature, auth, cert)


@dataclass(frozen=True, slots=True)
class EcdsaSignatureData:
    """ECDSA 256-bit quote signature data (v3 A.4, v4 A.3.8)."""

    signature: bytes
    """Quote signature over :meth:`Quote.signed_bytes`, raw r || s."""
    attestation_key: bytes
    """ECDSA attestation public key, raw x || y."""
    qe: QeReportCertificationData
    nested: bool
    """True for the v4/v5 layout, where ``qe`` sits inside certification data of type 6."""

    def to_bytes(self) -> bytes:
        head = self.signature + self.attestation_key
        if self.nested:
            return head + CertificationData(CERT_QE_REPORT, self.qe.to_bytes()).to_bytes()
        return head + self.qe.to_bytes()


def parse_signature_data(data: bytes, *, nested: bool) -> EcdsaSignatureData:
    """Quote signature data; ``nested`` for the v4/v5 layout (QE report certification data
    inside certification data of type 6)."""
    reader = ByteReader(data, "quote signature data")
    signature = reader.take(SIGNATURE_SIZE, "signature")
    key = reader.take(PUBLIC_KEY_SIZE, "attestation_key")
    if nested:
        outer = CertificationData.read(reader, "qe_certification_data")
        if outer.type != CERT_QE_REPORT:
            raise UnsupportedEvidence(
                f"quote signature data: certification data type {outer.type} != "
                f"{CERT_QE_REPORT} (QE report certification data)"
            )
        inner = ByteReader(outer.data, "QE report certification data")
        qe = QeReportCertificationData.read(inner)
        inner.expect_end("certification_data")
    else:
        qe = QeReportCertificationData.read(reader)
    reader.expect_end("certification data")
    return EcdsaSignatureData(signature, key, qe, nested)


@dataclass(frozen=True, slots=True)
class Quote:
    header: QuoteHeader
    body: QuoteBody
    signature_data: EcdsaSignatureData
    body_type: int | None = None
    """v5 body descriptor TYPE (1, 2 or 3); None for v3 and v4."""
    padding: int = 0
    """Number of zero bytes that followed the signature data."""

    @property
    def is_tdx(self) -> bool:
        return isinstance(self.body, TdReportBody10)

    @property
    def signed_size(self) -> int:
        """Length of the signed prefix of the quote's bytes."""
        descriptor = 0 if self.body_type is None else BODY_DESCRIPTOR_SIZE
        return HEADER_SIZE + descriptor + self.body.SIZE

    def signed_bytes(self) -> bytes:
        """The bytes the attestation key signed: header, v5 body descriptor, body."""
        return self.header.to_bytes() + self._descriptor() + self.body.to_bytes()

    def to_bytes(self) -> bytes:
        signature = self.signature_data.to_bytes()
        return b"".join(
            (
                self.signed_bytes(),
                len(signature).to_bytes(4, "little"),
                signature,
                bytes(self.padding),
            )
        )

    def _descriptor(self) -> bytes:
        if self.body_type is None:
            return b""
        return self.body_type.to_bytes(2, "little") + self.body.SIZE.to_bytes(4, "little")


def parse_quote(data: bytes) -> Quote:
    """Parse a DCAP quote; ``MalformedEvidence`` or ``UnsupportedEvidence`` otherwise."""
    reader = ByteReader(bytes(data), "quote")
    header = parse_record(QuoteHeader, reader.take(HEADER_SIZE, "header"))
    if header.attestation_key_type != ATTESTATION_KEY_ECDSA_P256:
        raise UnsupportedEvidence(
            f"quote header.attestation_key_type {header.attestation_key_type} != "
            f"{ATTESTATION_KEY_ECDSA_P256} (ECDSA-256-with-P-256)"
        )
    body_type: int | None = None
    body_class: type[EnclaveReportBody] | type[TdReportBody10]
    if header.version == 3:
        body_class = EnclaveReportBody
    elif header.version == 4:
        body_class = _v4_body_class(header.tee_type)
    elif header.version == 5:
        body_type = reader.u16("body descriptor TYPE")
        size = reader.u32("body descriptor SIZE")
        if body_type not in _BODY_BY_TYPE:
            raise UnsupportedEvidence(f"quote v5 body TYPE {body_type} is not 1, 2 or 3")
        body_class = _BODY_BY_TYPE[body_type]
        if size != body_class.SIZE:
            raise MalformedEvidence(
                f"quote v5 body SIZE {size} != {body_class.SIZE} for body TYPE {body_type}"
            )
    else:
        raise UnsupportedEvidence(f"quote header.version {header.version} is not 3, 4 or 5")
    body = parse_record(body_class, reader.take(body_class.SIZE, "body"))
    signature_size = reader.u32("signature data length")
    signature_data = parse_signature_data(
        reader.take(signature_size, "signature data"), nested=header.version >= 4
    )
    trailing = reader.rest()
    if trailing.count(0) != len(trailing):
        raise MalformedEvidence(
            f"quote: {len(trailing)} bytes after the signature data are not zero padding"
        )
    return Quote(header, body, signature_data, body_type, len(trailing))


def _v4_body_class(tee_type: int) -> type[EnclaveReportBody] | type[TdReportBody10]:
    if tee_type == TEE_TYPE_SGX:
        return EnclaveReportBody
    if tee_type == TEE_TYPE_TDX:
        return TdReportBody10
    raise UnsupportedEvidence(
        f"quote v4 header.tee_type {tee_type:#x} is not {TEE_TYPE_SGX:#x} (SGX) "
        f"or {TEE_TYPE_TDX:#x} (TDX)"
    )
