from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import MalformedEvidence
from broker.evidence import der
from broker.evidence.dcap.pck import SGX_EXTENSION_OID, parse_sgx_extensions, pck_extensions

from .vectors import DEBUG_TD_DIR, GCP_DIR, INTEL_ROOTS, OCCLUM_DIR, SIGNAL_2023_DIR, SPR_DIR


def _leaf(directory: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates((directory / "pck_chain.pem").read_bytes())[0]


def _raw_extension(directory: Path) -> bytes:
    ext = _leaf(directory).extensions.get_extension_for_oid(
        x509.ObjectIdentifier(SGX_EXTENSION_OID)
    )
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


@pytest.mark.parametrize(
    ("directory", "fmspc", "pce_svn", "components"),
    [
        (SPR_DIR, "50806f000000", 11, (3, 3, 2, 2, 2, 1, 0, 2)),
        (DEBUG_TD_DIR, "50806f000000", 11, (5, 5, 13, 2, 3, 1, 0, 3)),
        (GCP_DIR, "00806f050000", 11, (7, 7, 2, 2, 3, 1, 0, 3)),
        (SIGNAL_2023_DIR, "00606a000000", 13, (7, 9, 3, 3, 255, 255, 1, 0)),
        (OCCLUM_DIR, "00606a000000", 11, (4, 4, 3, 3, 255, 255, 0, 0)),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_vector_extensions_match_manifests(
    directory: Path, fmspc: str, pce_svn: int, components: tuple[int, ...]
) -> None:
    ext = pck_extensions(_leaf(directory))
    assert ext.fmspc.hex() == fmspc
    assert ext.pce_id == b"\x00\x00"
    assert ext.tcb.pce_svn == pce_svn
    assert ext.tcb.components[:8] == components
    assert ext.tcb.components[8:] == (0,) * 8
    assert len(ext.ppid) == 16
    assert ext.sgx_type == 1


def test_platform_ca_members() -> None:
    ext = pck_extensions(_leaf(DEBUG_TD_DIR))
    # Trustee reports this value byte-reversed; the DER OCTET STRING is as below.
    assert ext.platform_instance_id is not None
    assert ext.platform_instance_id.hex() == "021ac64d355ba904e2d5948d228d5482"
    assert ext.configuration is not None
    assert (ext.configuration.dynamic_platform, ext.configuration.cached_keys) == (True, True)


def test_certificate_without_sgx_extension() -> None:
    root = x509.load_pem_x509_certificate(
        (INTEL_ROOTS / "Intel_SGX_Provisioning_Certification_RootCA.pem").read_bytes()
    )
    with pytest.raises(MalformedEvidence, match=r"no SGX extension 1\.2\.840\.113741\.1\.13\.1"):
        pck_extensions(root)


def test_trailing_bytes_after_extension() -> None:
    with pytest.raises(MalformedEvidence, match="bytes after the DER value"):
        parse_sgx_extensions(_raw_extension(OCCLUM_DIR) + b"\x00")


@settings(max_examples=80, deadline=None)
@given(position=st.integers(min_value=0, max_value=400), value=st.integers(1, 255))
def test_mutated_extension_never_raises_anything_else(position: int, value: int) -> None:
    data = bytearray(_raw_extension(OCCLUM_DIR))
    data[position % len(data)] ^= value
    # A parser has no signature to check: a flip in a value (an SVN, the PPID, the FMSPC)
    # is another well-formed extension and parses. The PCK certificate's signature protects
    # these bytes (tests/unit/dcap/test_mutations.py flips them inside the certificate).
    with contextlib.suppress(MalformedEvidence):
        parse_sgx_extensions(bytes(data))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=600))
def test_truncated_extension_is_malformed(cut: int) -> None:
    data = _raw_extension(OCCLUM_DIR)
    with pytest.raises(MalformedEvidence):
        parse_sgx_extensions(data[: cut % len(data)])


@pytest.mark.parametrize(
    ("encoded", "match"),
    [
        (bytes.fromhex("0281"), "bad DER length"),
        (bytes.fromhex("028101ff"), "non-minimal DER length"),
        (bytes.fromhex("1f0100"), "multi-byte DER tag"),
        (bytes.fromhex("0203"), "overruns"),
    ],
)
def test_der_header_errors(encoded: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        der.parse_one(encoded, der.TAG_INTEGER, "test")


@pytest.mark.parametrize(
    ("value", "match"),
    [(b"", "empty"), (b"\x80", "negative"), (b"\x00\x01", "non-minimal")],
)
def test_der_integer_errors(value: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        der.decode_unsigned(value, "test")


def test_der_scalars() -> None:
    assert der.decode_unsigned(b"\x00\xff", "x") == 255
    assert der.decode_oid(bytes.fromhex("2a864886f84d010d01"), "x") == SGX_EXTENSION_OID
    assert der.decode_boolean(b"\xff", "x") is True
    with pytest.raises(MalformedEvidence, match="BOOLEAN"):
        der.decode_boolean(b"\x01", "x")
    with pytest.raises(MalformedEvidence, match="truncated OBJECT IDENTIFIER"):
        der.decode_oid(b"\x86", "x")
    with pytest.raises(MalformedEvidence, match="non-minimal OBJECT IDENTIFIER"):
        der.decode_oid(b"\x2a\x80\x01", "x")
    with pytest.raises(MalformedEvidence, match="tag 0x02 != 0x04"):
        der.parse_one(b"\x02\x01\x01", der.TAG_OCTET_STRING, "x")


def test_raw_ecdsa_signatures_become_der() -> None:
    # P-256 (quotes, QE reports, Intel collateral) and P-384 (COSE ES384) halves.
    assert der.ecdsa_signature(bytes(31) + b"\x01" + bytes(31) + b"\x02") == bytes.fromhex(
        "3006020101020102"
    )
    assert der.ecdsa_signature(b"\x80" + bytes(47) + bytes(47) + b"\x7f") == (
        bytes.fromhex("3036023100") + b"\x80" + bytes(47) + bytes.fromhex("02017f")
    )


def _extension(**overrides: object) -> bytes:
    from broker.simulate.intel import sgx_extension_der

    values: dict[str, object] = {
        "ppid": bytes(16),
        "components": [1] * 16,
        "pce_svn": 13,
        "cpu_svn": bytes(16),
        "pce_id": bytes(2),
        "fmspc": bytes(6),
    }
    values.update(overrides)
    return sgx_extension_der(**values)  # type: ignore[arg-type]


def test_built_extension_round_trips() -> None:
    ext = parse_sgx_extensions(_extension(platform_instance_id=b"\x01" * 16))
    assert ext.tcb.components == (1,) * 16
    assert ext.tcb.pce_svn == 13
    assert ext.platform_instance_id == b"\x01" * 16
    assert ext.configuration is not None
    assert ext.configuration.smt_enabled is True
    assert parse_sgx_extensions(_extension()).configuration is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"fmspc": bytes(5)}, "SGX FMSPC is 5 bytes, expected 6"),
        ({"pce_id": bytes(3)}, "SGX PCE-ID is 3 bytes, expected 2"),
        ({"cpu_svn": bytes(15)}, "SGX TCB CPUSVN is 15 bytes, expected 16"),
        ({"components": [256] + [0] * 15}, "SGX TCB comp01svn 256 > 255"),
        ({"components": [0] * 15}, r"lacks 1\.2\.840\.113741\.1\.13\.1\.2\.16"),
        ({"pce_svn": 70000}, "SGX TCB PCESVN 70000 > 65535"),
        ({"ppid": bytes(8)}, "SGX PPID is 8 bytes, expected 16"),
    ],
)
def test_built_extension_errors(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_sgx_extensions(_extension(**overrides))


def _base128(value: int) -> bytes:
    """An OBJECT IDENTIFIER arc in base 128, most significant group first (X.690 §8.19.2)."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def test_oid_arcs_are_bounded_at_128_bits() -> None:
    """An arc of 2,100 bytes (5,000 decimal digits) cannot be printed by Python; arcs are
    bounded as pyca/cryptography bounds them."""
    widest = (1 << 128) - 1
    assert der.decode_oid(b"\x2a" + _base128(widest), "x") == f"1.2.{widest}"
    with pytest.raises(MalformedEvidence, match="arc wider than 128 bits"):
        der.decode_oid(b"\x2a" + _base128(1 << 128), "x")
    huge = b"\x2a" + b"\xff" * 2100 + b"\x7f"
    member = der.encode_tlv(0x30, der.encode_tlv(0x06, huge) + der.encode_tlv(0x04, bytes(16)))
    with pytest.raises(MalformedEvidence, match="SGX extension: OBJECT IDENTIFIER arc wider"):
        parse_sgx_extensions(der.encode_tlv(0x30, member))


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 2),
    second=st.integers(0, 39),
    rest=st.lists(st.integers(0, (1 << 128) - 1), max_size=6),
)
def test_encode_oid_is_the_inverse_of_decode_oid(first: int, second: int, rest: list[int]) -> None:
    dotted = ".".join(str(arc) for arc in (first, second, *rest))
    assert der.decode_oid(der.encode_oid(dotted), "x") == dotted


def test_sgx_extension_member_oids_are_recognised_as_bytes() -> None:
    assert der.encode_oid(SGX_EXTENSION_OID) == bytes.fromhex("2a864886f84d010d01")
    # An unknown member (.99) is decoded as text and skipped, as before.
    unknown = der.encode_tlv(
        0x30,
        der.encode_tlv(0x06, der.encode_oid(SGX_EXTENSION_OID + ".99"))
        + der.encode_tlv(0x04, b"\x01"),
    )
    body = der.parse_one(_extension(), der.TAG_SEQUENCE, "x")
    assert parse_sgx_extensions(der.encode_tlv(0x30, body + unknown)) == parse_sgx_extensions(
        _extension()
    )


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (b"", "member has 0 elements, expected 2"),
        (der.encode_tlv(0x06, der.encode_oid(SGX_EXTENSION_OID + ".4")), "has 1 elements"),
        (
            der.encode_tlv(0x06, der.encode_oid(SGX_EXTENSION_OID + ".4"))
            + der.encode_tlv(0x04, bytes(6)) * 2,
            "has 3 elements",
        ),
        (der.encode_tlv(0x04, bytes(6)) * 2, r"DER tag 0x04 != 0x06"),
        (der.encode_tlv(0x06, b"\x86") + der.encode_tlv(0x04, bytes(6)), "truncated OBJECT"),
        (der.encode_tlv(0x06, b"\x2a") + b"\x04\x07" + bytes(6), "overruns"),
    ],
)
def test_malformed_members(member: bytes, match: str) -> None:
    body = der.parse_one(_extension(), der.TAG_SEQUENCE, "x")
    with pytest.raises(MalformedEvidence, match=f"^SGX extension: .*{match}"):
        parse_sgx_extensions(der.encode_tlv(0x30, der.encode_tlv(0x30, member) + body))


def test_duplicate_member_is_named() -> None:
    body = der.parse_one(_extension(), der.TAG_SEQUENCE, "x")
    fmspc = der.encode_tlv(
        0x30,
        der.encode_tlv(0x06, der.encode_oid(SGX_EXTENSION_OID + ".4"))
        + der.encode_tlv(0x04, bytes(6)),
    )
    with pytest.raises(MalformedEvidence, match=r"duplicate member [.\d]+\.113741\.1\.13\.1\.4$"):
        parse_sgx_extensions(der.encode_tlv(0x30, body + fmspc))
