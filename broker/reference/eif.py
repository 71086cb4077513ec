"""PCR0, PCR1, PCR2 (and PCR8) of an AWS Nitro Enclaves image file (EIF).

Source: the EIF format of aws-nitro-enclaves-image-format (``src/defs``), version 4, and the
Nitro Enclaves user guide, "Where to get an enclave's measurements".

* Header, 548 bytes, big-endian: magic ``.eif``, u16 version, u16 flags, u64 default memory,
  u64 default CPUs, u16 reserved, u16 number of sections, 32 u64 section offsets, 32 u64
  section sizes, u32 unused, u32 CRC-32 (IEEE) of everything in the file but these 4 bytes.
* Sections follow, each a 12-byte header (u16 type, u16 flags, u64 size) and its data.
  Types: 1 kernel, 2 kernel command line, 3 ramdisk, 4 signature, 5 metadata (0 is invalid).
* A PCR is a SHA-384 register extended once from zero: ``SHA-384(0^48 || SHA-384(data))``.
  PCR0 (the image) covers the data of the kernel, the command line and every ramdisk, in file
  order; PCR1 (the bootstrap) the kernel, the command line and the first ramdisk; PCR2 (the
  application) every ramdisk after the first. PCR8 covers the DER of the signing certificate
  in the signature section (a CBOR array of ``{signing_certificate: PEM, signature}``),
  present only in signed images.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker import __version__
from broker.policy.provenance import Tool
from broker.reference.computed import ArtifactInvalid, Computed, provenance, read_artifact

MAGIC = b".eif"
HEADER = struct.Struct(">4sHHQQHH32Q32QII")
SECTION_HEADER = struct.Struct(">HHQ")
MAX_SECTIONS = 32
PCR_SIZE = 48


class SectionType(IntEnum):
    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5


@dataclass(frozen=True, slots=True)
class EifSection:
    type: SectionType
    data: bytes


@dataclass(frozen=True, slots=True)
class Eif:
    version: int
    sections: tuple[EifSection, ...]

    def of_type(self, kind: SectionType) -> list[bytes]:
        return [section.data for section in self.sections if section.type is kind]


def parse_eif(image: bytes) -> Eif:
    """The sections of an EIF, after its magic, layout and CRC-32 are checked."""
    if len(image) < HEADER.size:
        raise ArtifactInvalid(f"{len(image)} bytes is shorter than the 548-byte EIF header")
    fields = HEADER.unpack_from(image)
    magic, version, count = fields[0], fields[1], fields[6]
    offsets, sizes, crc = fields[7 : 7 + MAX_SECTIONS], fields[39:71], fields[72]
    if magic != MAGIC:
        raise ArtifactInvalid(f"EIF magic is {magic!r}, not b'.eif'")
    if count > MAX_SECTIONS:
        raise ArtifactInvalid(f"EIF header declares {count} sections, more than 32")
    computed_crc = zlib.crc32(image[HEADER.size :], zlib.crc32(image[: HEADER.size - 4]))
    if computed_crc != crc:
        raise ArtifactInvalid(
            f"EIF CRC-32 is {crc:#010x} in the header, {computed_crc:#010x} over the file"
        )
    sections: list[EifSection] = []
    expected = HEADER.size
    for index in range(count):
        offset, size = offsets[index], sizes[index]
        if offset != expected:
            raise ArtifactInvalid(f"EIF section {index} is at {offset}, expected {expected}")
        if offset + SECTION_HEADER.size > len(image):
            raise ArtifactInvalid(f"EIF section {index} header runs past the end of the file")
        kind, _flags, length = SECTION_HEADER.unpack_from(image, offset)
        if length != size:
            raise ArtifactInvalid(f"EIF section {index} is {length} bytes, the header says {size}")
        start = offset + SECTION_HEADER.size
        if start + length > len(image):
            raise ArtifactInvalid(f"EIF section {index} runs past the end of the file")
        try:
            section_type = SectionType(kind)
        except ValueError:
            raise ArtifactInvalid(f"EIF section {index} has the invalid type {kind}") from None
        sections.append(EifSection(section_type, image[start : start + length]))
        expected = start + length
    if expected != len(image):
        raise ArtifactInvalid(f"{len(image) - expected} bytes follow the last EIF section")
    eif = Eif(version, tuple(sections))
    if len(eif.of_type(SectionType.KERNEL)) != 1 or not eif.of_type(SectionType.RAMDISK):
        raise ArtifactInvalid("an EIF needs one kernel section and at least one ramdisk")
    return eif


def extended_pcr(parts: Sequence[bytes]) -> bytes:
    """A SHA-384 PCR extended once from zero with the digest of ``parts`` concatenated."""
    measured = hashlib.sha384()
    for part in parts:
        measured.update(part)
    return hashlib.sha384(bytes(PCR_SIZE) + measured.digest()).digest()


def pcrs(eif: Eif) -> dict[int, bytes]:
    """PCR0, 1, 2 (and 8 when the image is signed) of ``eif``."""
    boot = [s.data for s in eif.sections if s.type in (SectionType.KERNEL, SectionType.CMDLINE)]
    ramdisks = eif.of_type(SectionType.RAMDISK)
    values = {
        0: extended_pcr([*boot, *ramdisks]),
        1: extended_pcr([*boot, ramdisks[0]]),
        2: extended_pcr(ramdisks[1:]),
    }
    signatures = eif.of_type(SectionType.SIGNATURE)
    if signatures:
        values[8] = extended_pcr([_signing_certificate(signatures[0])])
    return values


def _signing_certificate(section: bytes) -> bytes:
    try:
        entries: Any = cbor2.loads(section)
        pem = entries[0]["signing_certificate"]
        certificate = x509.load_pem_x509_certificate(bytes(pem))
    except (cbor2.CBORDecodeError, ValueError, TypeError, KeyError, IndexError):
        raise ArtifactInvalid("the EIF signature section holds no signing certificate") from None
    return certificate.public_bytes(Encoding.DER)


def compute_nitro(eif_path: Path, *, source: str | None = None) -> Computed:
    """PCR0-2 (and PCR8 when signed) of the enclave image at ``eif_path``."""
    image = read_artifact(eif_path)
    eif = parse_eif(image)
    values = {f"pcrs.{index}": value.hex() for index, value in sorted(pcrs(eif).items())}
    tool = Tool("keybroker eif-pcrs", __version__)
    parameters = [("eif_version", eif.version)]
    return Computed("nitro", values, provenance([(eif_path, image)], tool, parameters, source))
