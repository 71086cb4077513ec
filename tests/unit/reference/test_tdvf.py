"""MRTD from TDVF metadata, on images built here per the TDVF design guide."""

from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path

import pytest

from broker.reference.computed import ArtifactInvalid
from broker.reference.tdvf import PageAddOrder, compute_tdx, mrtd, tdvf_sections

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
TDX_OFFSET = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le
DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")

# (data offset, raw size, GPA, memory size, type, attributes), per the design guide's table.
BFV = (0x0000, 0x2000, 0xFFFFC000, 0x2000, 0, 1)  # firmware volume: added and extended
CFV = (0x2000, 0x1000, 0xFFFFB000, 0x1000, 1, 0)  # configuration: added, not extended
TEMP = (0, 0, 0x800000, 0x2000, 3, 0)  # temporary memory: added, no data
AUGMENTED = (0, 0, 0x900000, 0x1000, 4, 2)  # PAGE.AUG: accepted later, neither


def build_tdvf(sections: list[tuple[int, ...]], *, signature: bytes = b"TDVF") -> bytes:
    """Volumes (0x3000 bytes of patterned data), then the metadata, then the GUIDed table."""
    volumes = bytes((i * 7 + i // 256) % 256 for i in range(0x3000))
    metadata = struct.pack("<4sIII", signature, 16 + 32 * len(sections), 1, len(sections))
    metadata += b"".join(struct.pack("<IIQQII", *section) for section in sections)
    body = volumes + metadata
    table_tail = 32  # bytes after the footer entry
    offset_entry = struct.pack("<I", 0) + struct.pack("<H", 22) + TDX_OFFSET
    footer = struct.pack("<H", 18 + len(offset_entry)) + FOOTER
    image = bytearray(body + offset_entry + footer + bytes(table_tail))
    # The offset entry holds the metadata's distance from the end of the image.
    distance = len(image) - len(volumes)
    start = len(body)
    image[start : start + 4] = struct.pack("<I", distance)
    return bytes(image)


def add_block(gpa: int) -> bytes:
    return b"MEM.PAGE.ADD" + bytes(4) + gpa.to_bytes(8, "little") + bytes(104)


def extend_blocks(image: bytes, data_offset: int, gpa: int) -> bytes:
    out = b""
    for chunk in range(16):
        out += b"MR.EXTEND" + bytes(7) + (gpa + 256 * chunk).to_bytes(8, "little") + bytes(104)
        start = data_offset + 256 * chunk
        out += image[start : start + 256]
    return out


def test_mrtd_of_a_synthetic_tdvf_single_pass() -> None:
    image = build_tdvf([BFV, CFV, TEMP, AUGMENTED])
    stream = (
        add_block(0xFFFFC000)
        + extend_blocks(image, 0x0000, 0xFFFFC000)
        + add_block(0xFFFFD000)
        + extend_blocks(image, 0x1000, 0xFFFFD000)
        + add_block(0xFFFFB000)
        + add_block(0x800000)
        + add_block(0x801000)
    )
    assert mrtd(image) == hashlib.sha384(stream).digest()


def test_mrtd_two_pass_adds_a_sections_pages_before_extending_them() -> None:
    image = build_tdvf([BFV, CFV])
    stream = (
        add_block(0xFFFFC000)
        + add_block(0xFFFFD000)
        + extend_blocks(image, 0x0000, 0xFFFFC000)
        + extend_blocks(image, 0x1000, 0xFFFFD000)
        + add_block(0xFFFFB000)
    )
    assert mrtd(image, PageAddOrder.TWO_PASS) == hashlib.sha384(stream).digest()
    assert mrtd(image, PageAddOrder.TWO_PASS) != mrtd(image, PageAddOrder.SINGLE_PASS)


def test_every_measured_byte_counts() -> None:
    image = bytearray(build_tdvf([BFV, CFV]))
    before = mrtd(bytes(image))
    image[0x1FFF] ^= 1  # the last byte of the measured firmware volume
    assert mrtd(bytes(image)) != before
    image[0x1FFF] ^= 1
    image[0x2000] ^= 1  # the configuration volume is added, not measured
    assert mrtd(bytes(image)) == before


def test_compute_tdx_records_the_order(tmp_path: Path) -> None:
    path = tmp_path / "TDVF.fd"
    path.write_bytes(build_tdvf([BFV, CFV]))
    computed = compute_tdx(path, PageAddOrder.TWO_PASS)
    assert computed.values == {"mr_td": mrtd(path.read_bytes(), PageAddOrder.TWO_PASS).hex()}
    assert computed.provenance.parameters == (("page_add_order", "two-pass"),)
    assert computed.provenance.artifacts[0].name == "TDVF.fd"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (bytes(4096), "no OVMF GUIDed table footer 32 bytes before the end"),
        (build_tdvf([BFV], signature=b"TDVX"), "TDVF metadata signature is b'TDVX', not b'TDVF'"),
        (
            build_tdvf([(0x2800, 0, 0xFFFFC000, 0x1000, 0, 1)]),
            "TDVF section 0 (BFV): data at 10240 runs past the image",
        ),
        (
            build_tdvf([(0, 0, 0xFFFFC800, 0x1000, 0, 1)]),
            "TDVF section 0 (BFV): address and size must be 4 KiB aligned",
        ),
        (b"short", "5 bytes is too short for an OVMF GUIDed table"),
    ],
)
def test_malformed_images_are_refused(image: bytes, message: str) -> None:
    with pytest.raises(ArtifactInvalid) as refused:
        mrtd(image)
    assert refused.value.detail == message


def test_a_table_without_the_tdx_entry_is_no_tdvf() -> None:
    image = bytearray(build_tdvf([BFV]))
    guid_at = bytes(image).rindex(TDX_OFFSET)
    image[guid_at : guid_at + 16] = uuid.UUID(int=1).bytes_le
    with pytest.raises(ArtifactInvalid) as refused:
        mrtd(bytes(image))
    assert refused.value.detail == "the GUIDed table has no TDX metadata offset entry: not a TDVF"


@pytest.mark.skipif(not DEBIAN_OVMF.is_file(), reason="Debian's ovmf package is not installed")
def test_a_real_ovmf_build_has_the_sections_the_design_describes() -> None:
    """Debian's OvmfPkgX64 build carries TDVF metadata: a measured boot firmware volume
    ending at 4 GiB, an unmeasured configuration volume below it, the TD HOB and temporary
    memory, nothing augmented."""
    sections = tdvf_sections(DEBIAN_OVMF.read_bytes())
    kinds = [(s.type_name, s.extended, s.added) for s in sections]
    assert kinds[0] == ("BFV", True, True)
    assert kinds[1] == ("CFV", False, True)
    assert {kind for kind, _, _ in kinds[2:]} == {"TD_HOB", "TempMem"}
    bfv = sections[0]
    assert bfv.memory_address + bfv.memory_data_size == 1 << 32
