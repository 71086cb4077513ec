"""MRTD of a TD Virtual Firmware image, from its TDVF metadata.

Sources: Intel TDX Virtual Firmware Design Guide, section "TDVF Metadata" (the descriptor
and its section table) and the Intel TDX Module specification, TDH.MEM.PAGE.ADD and
TDH.MR.EXTEND (how each extends MRTD); the metadata is found through the GUIDed table that
OVMF builds end with (OvmfPkg ResetVector).

* The firmware ends with a GUIDed table: its footer entry (GUID 96b582de-…) sits 32 bytes
  before the end; entries are walked backwards, each ``data || u16 length || GUID`` with the
  length covering the whole entry. The entry e47a6535-… holds a u32: the TDVF metadata's
  offset from the end of the image.
* The metadata: ``"TDVF"``, u32 length, u32 version (1), u32 number of sections, then one
  32-byte entry per section: u32 data offset (in the image), u32 raw data size, u64 guest
  physical address, u64 memory size, u32 type, u32 attributes (bit 0 MR.EXTEND, bit 1
  PAGE.AUG). All little-endian.
* The VMM adds every page of every section not marked PAGE.AUG with TDH.MEM.PAGE.ADD, which
  extends MRTD with a 128-byte block: ``"MEM.PAGE.ADD"`` at 0, the page's GPA (u64) at 16,
  zeros elsewhere. For a section marked MR.EXTEND it then measures the page's content with
  TDH.MR.EXTEND in 256-byte chunks, each extending MRTD with ``"MR.EXTEND"`` at 0 and the
  chunk's GPA at 16 (128 bytes), then the 256 bytes themselves, read from the image at the
  section's data offset. MRTD is the SHA-384 of that whole sequence.
* VMMs differ in one point: current KVM adds and extends one page at a time (``single-pass``);
  earlier TDX VMMs added all of a section's pages before extending any (``two-pass``). The
  order changes MRTD, so it is a parameter and recorded in the entry's provenance.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from broker import __version__
from broker.policy.provenance import Tool
from broker.reference.computed import ArtifactInvalid, Computed, provenance, read_artifact

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
TDX_METADATA_OFFSET_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le
#: The table's footer entry ends this many bytes before the end of the image.
FOOTER_DISTANCE_FROM_END = 32
ENTRY_HEADER = struct.Struct("<H16s")  # length, GUID (after the entry's data)
DESCRIPTOR = struct.Struct("<4sIII")  # "TDVF", length, version, number of sections
SECTION = struct.Struct("<IIQQII")
SIGNATURE = b"TDVF"
PAGE_SIZE = 0x1000
EXTEND_CHUNK = 0x100
ATTRIBUTE_MR_EXTEND = 0x1
ATTRIBUTE_PAGE_AUG = 0x2
#: At most this many pages added (16 GiB): more is not a firmware but an endless loop.
MAX_PAGES = 1 << 22
MAX_SECTIONS = 64

SECTION_TYPES = {
    0: "BFV",
    1: "CFV",
    2: "TD_HOB",
    3: "TempMem",
    4: "PermMem",
    5: "Payload",
    6: "PayloadParam",
}


class PageAddOrder(StrEnum):
    SINGLE_PASS = "single-pass"  # noqa: S105 (a page order, not a password)
    TWO_PASS = "two-pass"  # noqa: S105


@dataclass(frozen=True, slots=True)
class TdvfSection:
    data_offset: int
    raw_data_size: int
    memory_address: int
    memory_data_size: int
    type: int
    attributes: int

    @property
    def type_name(self) -> str:
        return SECTION_TYPES.get(self.type, f"type {self.type}")

    @property
    def extended(self) -> bool:
        return bool(self.attributes & ATTRIBUTE_MR_EXTEND)

    @property
    def added(self) -> bool:
        return not self.attributes & ATTRIBUTE_PAGE_AUG


def guided_table(image: bytes) -> dict[bytes, bytes]:
    """The entries of the GUIDed table at the end of an OVMF image: GUID (bytes_le) -> data."""
    footer_end = len(image) - FOOTER_DISTANCE_FROM_END
    footer_start = footer_end - ENTRY_HEADER.size
    if footer_start < 0:
        raise ArtifactInvalid(f"{len(image)} bytes is too short for an OVMF GUIDed table")
    total, guid = ENTRY_HEADER.unpack_from(image, footer_start)
    if guid != FOOTER_GUID:
        raise ArtifactInvalid("no OVMF GUIDed table footer 32 bytes before the end")
    start = footer_end - total
    if total < ENTRY_HEADER.size or start < 0:
        raise ArtifactInvalid(f"the GUIDed table's length {total} does not fit the image")
    entries: dict[bytes, bytes] = {}
    end = footer_start  # entries are walked backwards from the footer
    while end > start:
        if end - ENTRY_HEADER.size < start:
            raise ArtifactInvalid("a GUIDed table entry runs past the table's start")
        length, guid = ENTRY_HEADER.unpack_from(image, end - ENTRY_HEADER.size)
        if length < ENTRY_HEADER.size or end - length < start:
            raise ArtifactInvalid(f"a GUIDed table entry has the impossible length {length}")
        entries[guid] = image[end - length : end - ENTRY_HEADER.size]
        end -= length
    return entries


def tdvf_sections(image: bytes) -> tuple[TdvfSection, ...]:
    """The section table of the TDVF metadata that ``image`` points to."""
    entry = guided_table(image).get(TDX_METADATA_OFFSET_GUID)
    if entry is None:
        raise ArtifactInvalid("the GUIDed table has no TDX metadata offset entry: not a TDVF")
    if len(entry) < 4:
        raise ArtifactInvalid(f"the TDX metadata offset entry holds {len(entry)} bytes, not 4")
    (offset_from_end,) = struct.unpack_from("<I", entry)
    start = len(image) - offset_from_end
    if offset_from_end > len(image) or start + DESCRIPTOR.size > len(image):
        raise ArtifactInvalid(f"the TDVF metadata offset {offset_from_end} is outside the image")
    signature, length, version, count = DESCRIPTOR.unpack_from(image, start)
    if signature != SIGNATURE:
        raise ArtifactInvalid(f"TDVF metadata signature is {signature!r}, not b'TDVF'")
    if version != 1:
        raise ArtifactInvalid(f"TDVF metadata version {version} is not 1")
    if count > MAX_SECTIONS or length != DESCRIPTOR.size + count * SECTION.size:
        raise ArtifactInvalid(f"TDVF metadata length {length} does not hold {count} sections")
    if start + length > len(image):
        raise ArtifactInvalid("the TDVF section table runs past the end of the image")
    sections = tuple(
        TdvfSection(*SECTION.unpack_from(image, start + DESCRIPTOR.size + i * SECTION.size))
        for i in range(count)
    )
    pages = 0
    for index, section in enumerate(sections):
        _check(index, section, len(image))
        pages += section.memory_data_size // PAGE_SIZE
    if pages > MAX_PAGES:
        raise ArtifactInvalid(f"TDVF sections add {pages} pages, more than {MAX_PAGES}")
    return sections


def _check(index: int, section: TdvfSection, image_size: int) -> None:
    where = f"TDVF section {index} ({section.type_name})"
    if section.memory_address % PAGE_SIZE or section.memory_data_size % PAGE_SIZE:
        raise ArtifactInvalid(f"{where}: address and size must be 4 KiB aligned")
    if section.raw_data_size > section.memory_data_size:
        raise ArtifactInvalid(f"{where}: raw data larger than its memory")
    if section.memory_address + section.memory_data_size > 1 << 64:
        raise ArtifactInvalid(f"{where}: guest addresses past 2^64")
    # MR.EXTEND measures whole pages of the image from the data offset.
    measured = section.memory_data_size if section.extended else section.raw_data_size
    if section.data_offset + measured > image_size:
        raise ArtifactInvalid(f"{where}: data at {section.data_offset} runs past the image")


def _page_add(gpa: int) -> bytes:
    return b"MEM.PAGE.ADD".ljust(16, b"\0") + gpa.to_bytes(8, "little") + bytes(104)


def _extend_blocks(image: bytes, section: TdvfSection, page: int) -> Iterator[bytes]:
    base = page * PAGE_SIZE
    for chunk in range(0, PAGE_SIZE, EXTEND_CHUNK):
        gpa = section.memory_address + base + chunk
        yield b"MR.EXTEND".ljust(16, b"\0") + gpa.to_bytes(8, "little") + bytes(104)
        offset = section.data_offset + base + chunk
        yield image[offset : offset + EXTEND_CHUNK]


def mrtd(image: bytes, order: PageAddOrder = PageAddOrder.SINGLE_PASS) -> bytes:
    """MRTD after the VMM has added and measured every section of ``image``."""
    digest = hashlib.sha384()

    def add(section: TdvfSection, page: int) -> None:
        if section.added:
            digest.update(_page_add(section.memory_address + page * PAGE_SIZE))

    def extend(section: TdvfSection, page: int) -> None:
        if section.extended:
            for block in _extend_blocks(image, section, page):
                digest.update(block)

    for section in tdvf_sections(image):
        pages = range(section.memory_data_size // PAGE_SIZE)
        if order is PageAddOrder.TWO_PASS:
            for page in pages:
                add(section, page)
            for page in pages:
                extend(section, page)
        else:
            for page in pages:
                add(section, page)
                extend(section, page)
    return digest.digest()


def compute_tdx(
    tdvf: Path,
    order: PageAddOrder = PageAddOrder.SINGLE_PASS,
    *,
    source: str | None = None,
) -> Computed:
    """MRTD of the firmware at ``tdvf``, with its provenance."""
    image = read_artifact(tdvf)
    value = mrtd(image, order)
    tool = Tool("keybroker tdvf-mrtd", __version__)
    parameters = [("page_add_order", order.value)]
    evidence = provenance([(tdvf, image)], tool, parameters, source)
    return Computed("tdx", {"mr_td": value.hex()}, evidence)
