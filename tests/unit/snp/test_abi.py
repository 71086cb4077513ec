"""ATTESTATION_REPORT parsing: exact round trip, reserved fields, versions, sizes, and
only our errors for any input (property-based)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.snp.abi import (
    REPORT_SIZE,
    GuestPolicy,
    PlatformInfo,
    SignerInfo,
    SigningKey,
    TcbParts,
    TcbVersion,
    parse_report,
)
from tests.unit.snp.conftest import GO_SEV_GUEST, TRUSTEE_VLEK, VECTORS, Vector

V2 = GO_SEV_GUEST.evidence()
V3 = TRUSTEE_VLEK.evidence()


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_round_trip_on_every_real_report(vector: Vector) -> None:
    data = vector.evidence()
    report = parse_report(data)
    assert report.to_bytes() == data
    assert report.signed_bytes() == data[:0x2A0]


def test_decoded_fields_of_a_v3_report() -> None:
    report = parse_report(V3)
    assert report.version == 3
    assert report.vmpl == 1
    assert report.signer_info == SignerInfo(SigningKey.VLEK, mask_chip_key=False)
    assert report.cpuid is not None
    assert (report.cpuid.family, report.cpuid.model, report.cpuid.stepping) == (0x19, 1, 1)
    assert report.reported_tcb.value == 0xD918000000000004
    assert report.reported_tcb.parts(turin=False) == TcbParts(4, 0, 24, 217)
    assert report.platform_info.to_int() == 0x27
    assert report.launch_mit_vector is None


def test_version_5_round_trip_with_mitigation_vectors() -> None:
    report = dataclasses.replace(
        parse_report(V3), version=5, launch_mit_vector=0x3, current_mit_vector=0x1_0000_0007
    )
    data = report.to_bytes()
    assert data[0x1F8:0x208] == struct.pack("<QQ", 0x3, 0x1_0000_0007)
    assert parse_report(data) == report


def test_turin_tcb_layout() -> None:
    tcb = TcbVersion(bytes([1, 2, 3, 4, 0, 0, 0, 9]))
    assert tcb.parts(turin=True) == TcbParts(bootloader=2, tee=3, snp=4, microcode=9, fmc=1)
    assert tcb.parts(turin=False) == TcbParts(bootloader=1, tee=2, snp=0, microcode=9)
    assert TcbVersion.compose(tcb.parts(turin=True), turin=True) == tcb
    with pytest.raises(ValueError, match="fmc"):
        TcbVersion.compose(TcbParts(1, 2, 3, 4), turin=True)


@pytest.mark.parametrize("size", [0, 1, 4, REPORT_SIZE - 1, REPORT_SIZE + 1, 4000])
def test_wrong_sizes_are_malformed(size: int) -> None:
    data = (V2 * 4)[:size]
    with pytest.raises(MalformedEvidence, match=rf"is {size} bytes, the ABI size is 1184"):
        parse_report(data)


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unknown_versions_are_unsupported(version: int) -> None:
    with pytest.raises(UnsupportedEvidence, match=rf"VERSION {version} is not one of 2, 3, 5"):
        parse_report(_with(V2, 0, struct.pack("<I", version)))


@pytest.mark.parametrize("algo", [0, 2])
def test_unknown_signature_algorithms_are_unsupported(algo: int) -> None:
    with pytest.raises(UnsupportedEvidence, match=rf"SIGNATURE_ALGO {algo} is not 1"):
        parse_report(_with(V2, 0x34, struct.pack("<I", algo)))


@pytest.mark.parametrize(
    ("data", "offset", "match"),
    [
        (V2, 0x04C, r"reserved bytes 0x04c\.\.0x04f"),
        (V2, 0x188, r"reserved \(CPUID in v3\+\) bytes 0x188\.\.0x18a"),
        (V3, 0x18B, r"reserved bytes 0x18b\.\.0x19f"),
        (V2, 0x19F, r"reserved bytes 0x18b\.\.0x19f"),
        (V2, 0x1EB, r"reserved bytes 0x1eb\.\.0x1eb"),
        (V2, 0x1EF, r"reserved bytes 0x1ef\.\.0x1ef"),
        (V2, 0x1F8, r"reserved bytes 0x1f8\.\.0x29f"),
        (V3, 0x29F, r"reserved bytes 0x1f8\.\.0x29f"),
        (V2, 0x2A0 + 144, r"SIGNATURE reserved bytes 0x330\.\.0x49f"),
        (V2, 0x49F, r"SIGNATURE reserved bytes 0x330\.\.0x49f"),
    ],
)
def test_reserved_bytes_must_be_zero(data: bytes, offset: int, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_report(_with(data, offset, b"\x01"))


def test_v5_reserved_bytes_after_the_mitigation_vectors_must_be_zero() -> None:
    v5 = _with(V3, 0, struct.pack("<I", 5))
    assert parse_report(_with(v5, 0x1F8, b"\x07")).launch_mit_vector == 7
    with pytest.raises(MalformedEvidence, match=r"reserved bytes 0x208\.\.0x29f"):
        parse_report(_with(v5, 0x208, b"\x01"))


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0x08, struct.pack("<Q", 0x10000), r"POLICY 0x10000: bit 17 is reserved and must be one"),
        (0x08, struct.pack("<Q", 0x4030000), r"POLICY 0x4030000: reserved bits 63:26"),
        (0x40, struct.pack("<Q", 0x40), r"PLATFORM_INFO 0x40: reserved bits"),
        (0x40, struct.pack("<Q", 0x100), r"PLATFORM_INFO 0x100: reserved bits"),
        (0x48, struct.pack("<I", 0x20), r"SIGNER_INFO 0x20 \(offset 0x048\): reserved bits 31:5"),
        (0x48, struct.pack("<I", 2 << 2), r"SIGNER_INFO.SIGNING_KEY 2 is reserved"),
        (0x48, struct.pack("<I", 6 << 2), r"SIGNER_INFO.SIGNING_KEY 6 is reserved"),
    ],
)
def test_reserved_bits_are_malformed(offset: int, value: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_report(_with(V2, offset, value))


def test_policy_and_platform_bits_decode() -> None:
    policy = GuestPolicy.from_int(0x3FF1F02)
    assert policy == GuestPolicy(
        abi_minor=2,
        abi_major=0x1F,
        smt=True,
        migrate_ma=True,
        debug=True,
        single_socket=True,
        cxl_allow=True,
        mem_aes_256_xts=True,
        rapl_dis=True,
        ciphertext_hiding=True,
        page_swap_disable=True,
    )
    assert policy.to_int() == 0x3FF1F02
    info = PlatformInfo.from_int(0xBF)
    assert info == PlatformInfo(True, True, True, True, True, True, True)
    assert SignerInfo.from_int(0b11111) == SignerInfo(SigningKey.NONE, True, True)


@given(st.integers(min_value=0, max_value=2**64 - 1))
@settings(max_examples=200)
def test_policy_round_trips_or_is_malformed(value: int) -> None:
    try:
        policy = GuestPolicy.from_int(value)
    except MalformedEvidence:
        return
    assert policy.to_int() == value


def test_to_bytes_refuses_what_no_report_holds() -> None:
    report = parse_report(V2)
    for change, match in [
        ({"version": 4}, "VERSION 4"),
        ({"signature_algo": 2}, "SIGNATURE_ALGO 2"),
        ({"version": 3}, "cpuid"),
        ({"version": 5, "cpuid": parse_report(V3).cpuid}, "both mitigation vectors"),
        ({"launch_mit_vector": 1}, "version 5\\+ reports only"),
        ({"chip_id": b"\x01" * 63}, "chip_id is 63 bytes, not 64"),
        ({"reported_tcb": TcbVersion(b"\x01")}, "reported_tcb is 1 bytes, not 8"),
        ({"signature": dataclasses.replace(report.signature, r=1 << 600)}, "72 bytes"),
    ]:
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(report, **change).to_bytes()


@given(st.binary(max_size=1400))
@settings(max_examples=300)
def test_random_bytes_give_only_our_errors(data: bytes) -> None:
    try:
        report = parse_report(data)
    except (MalformedEvidence, UnsupportedEvidence):
        return
    assert report.to_bytes() == data


@given(
    st.sampled_from([V2, V3]),
    st.lists(st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(0, 255)), max_size=4),
    st.integers(min_value=-8, max_value=8),
)
@settings(max_examples=300)
def test_mutated_reports_round_trip_or_give_our_errors(
    base: bytes, edits: list[tuple[int, int]], resize: int
) -> None:
    data = bytearray(base)
    for offset, value in edits:
        data[offset] = value
    if resize > 0:
        data += bytes(resize)
    elif resize < 0:
        del data[resize:]
    try:
        report = parse_report(bytes(data))
    except (MalformedEvidence, UnsupportedEvidence):
        return
    assert report.to_bytes() == bytes(data)
