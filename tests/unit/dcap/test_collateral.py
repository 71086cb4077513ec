from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import CollateralExpired, CollateralInvalid
from broker.evidence import der
from broker.evidence.dcap.collateral import (
    TcbStatus,
    parse_qe_identity,
    parse_tcb_info,
    top_level_members,
    verify_collateral_signature,
)
from broker.evidence.dcap.roots import KNOWN_TCB_SIGNING_CERTS
from broker.evidence.trust import check_window, load_certificates, load_crls, parse_collateral

from .vectors import SIGNAL_2022_DIR, SIGNAL_2023_DIR, SPR_DIR

SIGNER = KNOWN_TCB_SIGNING_CERTS[0]


def _tdx_tcb_info() -> bytes:
    return (SPR_DIR / "tcbInfo.json").read_bytes()


def test_tdx_tcb_info_v3() -> None:
    signed = parse_tcb_info(_tdx_tcb_info())
    info = signed.body
    assert (info.id, info.version, info.tcb_evaluation_data_number) == ("TDX", 3, 15)
    assert info.fmspc.hex() == "50806f000000"
    assert info.issue_date == datetime(2023, 6, 18, 8, 42, 58, tzinfo=UTC)
    assert info.tdx_module is not None
    assert info.tdx_module.mrsigner == bytes(48)
    assert info.tdx_module.attributes_mask == b"\xff" * 8
    assert info.tdx_module_identities == ()
    first, second = info.tcb_levels
    assert first.status is TcbStatus.UP_TO_DATE
    assert first.sgx_components[:8] == (5, 5, 2, 2, 3, 1, 0, 3)
    assert first.tdx_components is not None
    assert first.tdx_components[:3] == (3, 0, 5)
    assert second.status is TcbStatus.OUT_OF_DATE
    assert "INTEL-SA-00477" in second.advisory_ids
    # The signature covers the inner object exactly as served.
    assert signed.signed_bytes.startswith(b'{"id":"TDX","version":3,')
    assert signed.signed_bytes.endswith(b"}")
    verify_collateral_signature(signed, SIGNER, "TCB Info")


def test_sgx_tcb_info_v2_has_no_id() -> None:
    info = parse_tcb_info((SIGNAL_2022_DIR / "tcbInfo.json").read_bytes()).body
    assert (info.id, info.version, len(info.tcb_levels)) == ("SGX", 2, 4)
    assert info.tcb_levels[0].sgx_components[:6] == (4, 4, 3, 3, 255, 255)
    assert info.tcb_levels[0].tdx_components is None


def test_sgx_tcb_info_v3_advisories() -> None:
    level = parse_tcb_info((SIGNAL_2023_DIR / "tcbInfo.json").read_bytes()).body.tcb_levels[0]
    assert level.status is TcbStatus.SW_HARDENING_NEEDED
    assert level.advisory_ids == ("INTEL-SA-00615", "INTEL-SA-00657")


def test_qe_identity() -> None:
    signed = parse_qe_identity((SPR_DIR / "qeIdentity.json").read_bytes())
    identity = signed.body
    assert (identity.id, identity.version, identity.isvprodid) == ("TD_QE", 2, 2)
    assert identity.mrsigner.hex().startswith("dc9e2a7c")
    assert identity.miscselect_mask == b"\xff" * 4
    assert identity.tcb_levels[0].isvsvn == 4
    verify_collateral_signature(signed, SIGNER, "QE Identity")


def test_nul_terminated_collateral_is_tolerated() -> None:
    data = _tdx_tcb_info() + b"\n\x00"
    signed = parse_tcb_info(data)
    verify_collateral_signature(signed, SIGNER, "TCB Info")


def test_signature_over_reformatted_json_fails() -> None:
    # Same content, different bytes: the signature covers the served bytes, not the object.
    document = json.loads(_tdx_tcb_info())
    reformatted = json.dumps(document, indent=1).encode()
    with pytest.raises(CollateralInvalid, match="signature does not verify"):
        verify_collateral_signature(parse_tcb_info(reformatted), SIGNER, "TCB Info")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"tcbEvaluationDataNumber":15', b'"tcbEvaluationDataNumber":16'),
        (b'"tcbStatus":"OutOfDate"', b'"tcbStatus":"UpToDate" '),
        (b'"pcesvn":11', b'"pcesvn":10'),
    ],
)
def test_edited_tcb_info_fails_signature(old: bytes, new: bytes) -> None:
    data = _tdx_tcb_info()
    assert old in data
    with pytest.raises(CollateralInvalid, match="TCB Info signature does not verify"):
        verify_collateral_signature(parse_tcb_info(data.replace(old, new, 1)), SIGNER, "TCB Info")


def test_edited_signature_fails() -> None:
    data = bytearray(_tdx_tcb_info())
    position = data.index(b'"signature":"') + 20
    data[position] = ord("0") if data[position] != ord("0") else ord("1")
    with pytest.raises(CollateralInvalid, match="signature does not verify"):
        verify_collateral_signature(parse_tcb_info(bytes(data)), SIGNER, "TCB Info")


@pytest.mark.parametrize(
    ("document", "match"),
    [
        (b"[]", "not a JSON object"),
        (b'{"tcbInfo":{}}', "no 'signature' member"),
        (b'{"signature":"00"}', "no 'tcbInfo' member"),
        (b'{"tcbInfo":{},"tcbInfo":{},"signature":""}', "duplicate member 'tcbInfo'"),
        (b'{"tcbInfo":{},"signature":"00"} x', "unexpected text"),
        (b'{"tcbInfo":{}, "signature":"00"', "not valid JSON|expected"),
        (b'{"tcbInfo":[],"signature":"' + b"00" * 64 + b'"}', "tcbInfo is not an object"),
        (b'{"tcbInfo":{},"signature":"zz"}', "signature is not 64 bytes of hex"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{" * 5000, "nests too deeply|not valid JSON"),
        # The json module refuses integers past 4,300 digits with a ValueError.
        (b'{"tcbInfo":{"version":' + b"9" * 4301 + b'},"signature":"00"}', "integer too long"),
        (b'{"signature":' + b"1" * 5000 + b',"tcbInfo":{}}', "integer too long"),
    ],
)
def test_envelope_errors(document: bytes, match: str) -> None:
    with pytest.raises(CollateralInvalid, match=match):
        parse_tcb_info(document)


def test_qe_identity_with_an_over_long_integer() -> None:
    document = (
        (SPR_DIR / "qeIdentity.json")
        .read_bytes()
        .replace(b'"version":2', b'"version":' + b"9" * 4301, 1)
    )
    assert document != (SPR_DIR / "qeIdentity.json").read_bytes()
    with pytest.raises(CollateralInvalid, match="QE Identity holds an integer too long to read"):
        parse_qe_identity(document)


def _edit_inner(mutate: dict[str, object]) -> bytes:
    document = json.loads(_tdx_tcb_info())
    document["tcbInfo"].update(mutate)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        ({"version": 1}, r"tcbInfo.version 1 is not 2 or 3"),
        ({"id": "XYZ"}, r"tcbInfo.id 'XYZ'"),
        ({"tcbType": 1}, r"tcbInfo.tcbType 1 != 0"),
        ({"fmspc": "50806f"}, r"tcbInfo.fmspc is not 6 bytes"),
        ({"issueDate": "yesterday"}, r"tcbInfo.issueDate 'yesterday'"),
        ({"nextUpdate": "2023-07-18T08:42:58"}, r"has no time zone"),
        ({"tcbEvaluationDataNumber": True}, r"tcbEvaluationDataNumber True is not an integer"),
        ({"tcbLevels": []}, r"tcbInfo.tcbLevels is not a non-empty list"),
        ({"tdxModule": None}, r"tcbInfo.tdxModule is not an object"),
        ({"tdxModuleIdentities": [{"id": "TDX_01"}]}, r"tdxModuleIdentities\[0\].mrsigner"),
    ],
)
def test_tcb_info_field_errors_name_the_field(mutate: dict[str, object], match: str) -> None:
    with pytest.raises(CollateralInvalid, match=match):
        parse_tcb_info(_edit_inner(mutate))


@pytest.mark.parametrize(
    ("level", "match"),
    [
        ({"tcbStatus": "Great"}, r"tcbLevels\[0\].tcbStatus 'Great'"),
        ({"tcb": {"pcesvn": 1}}, r"tcbLevels\[0\].tcb.sgxtcbcomponents is missing"),
        ({"advisoryIDs": [1]}, r"advisoryIDs is not a list of strings"),
        ({"tcbDate": 5}, r"tcbLevels\[0\].tcbDate 5 is not a string"),
    ],
)
def test_tcb_level_errors(level: dict[str, object], match: str) -> None:
    document = json.loads(_tdx_tcb_info())
    document["tcbInfo"]["tcbLevels"][0].update(level)
    with pytest.raises(CollateralInvalid, match=match):
        parse_tcb_info(json.dumps(document).encode())


def test_component_count_is_checked() -> None:
    document = json.loads(_tdx_tcb_info())
    document["tcbInfo"]["tcbLevels"][0]["tcb"]["tdxtcbcomponents"].pop()
    with pytest.raises(CollateralInvalid, match="tdxtcbcomponents has 15 entries, expected 16"):
        parse_tcb_info(json.dumps(document).encode())


def test_version_2_must_not_have_id() -> None:
    document = json.loads((SIGNAL_2022_DIR / "tcbInfo.json").read_bytes())
    document["tcbInfo"]["id"] = "SGX"
    with pytest.raises(CollateralInvalid, match="version 2 has an 'id'"):
        parse_tcb_info(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        ({"version": 1}, r"enclaveIdentity.version 1 != 2"),
        ({"miscselect": "0000"}, r"enclaveIdentity.miscselect is not 4 bytes"),
        ({"isvprodid": -1}, r"isvprodid -1 is not an integer"),
        ({"tcbLevels": [{"tcb": {}}]}, r"tcbLevels\[0\].tcb.isvsvn is missing"),
    ],
)
def test_qe_identity_errors(mutate: dict[str, object], match: str) -> None:
    document = json.loads((SPR_DIR / "qeIdentity.json").read_bytes())
    document["enclaveIdentity"].update(mutate)
    with pytest.raises(CollateralInvalid, match=match):
        parse_qe_identity(json.dumps(document).encode())


def test_members_keep_source_text() -> None:
    members = top_level_members(b' { "a" : [1, 2] ,"b":{"c" : 1}}\x00', "doc")
    assert members == {"a": ([1, 2], "[1, 2]"), "b": ({"c": 1}, '{"c" : 1}')}
    assert top_level_members(b"{}", "doc") == {}


def test_window() -> None:
    issue = datetime(2023, 6, 1, tzinfo=UTC)
    next_update = datetime(2023, 7, 1, tzinfo=UTC)
    check_window("X", issue, next_update, next_update)
    with pytest.raises(CollateralExpired, match="X nextUpdate 2023-07-01T00:00:00Z is before"):
        check_window("X", issue, next_update, datetime(2023, 7, 2, tzinfo=UTC))
    with pytest.raises(CollateralExpired, match="X issueDate 2023-06-01T00:00:00Z is after"):
        check_window("X", issue, next_update, datetime(2023, 5, 2, tzinfo=UTC))
    with pytest.raises(CollateralExpired, match="X thisUpdate 2023-06-01T00:00:00Z is after"):
        check_window("X", issue, next_update, datetime(2023, 5, 2, tzinfo=UTC), start="thisUpdate")
    with pytest.raises(CollateralInvalid, match=r"^X has no nextUpdate$"):
        check_window("X", issue, None, issue)


def load_crl(data: bytes, name: str) -> x509.CertificateRevocationList:
    """A CRL collateral as the DCAP verifier reads it (``trust.load_crls``, its errors as
    ``CollateralInvalid`` naming the collateral)."""
    [crl] = parse_collateral(name, load_crls, data)
    return crl


def test_crls_in_der_pem_and_nul_terminated() -> None:
    der_crl = (SPR_DIR / "pck_platform_crl.der").read_bytes()
    crl = load_crl(der_crl, "pck_crl")
    pem = x509.load_der_x509_crl(der_crl).public_bytes(Encoding.PEM)
    assert load_crl(pem + b"\x00", "pck_crl") == crl
    assert load_crl(der_crl + b"\x00", "pck_crl") == crl
    with pytest.raises(CollateralInvalid, match=r"pck_crl: DER CRL does not parse: .*ShortData"):
        load_crl(der_crl[:-5], "pck_crl")
    # Only NULs after the CRL are a terminator; other bytes are trailing data.
    with pytest.raises(CollateralInvalid, match=r"pck_crl: DER CRL does not parse: .*ExtraData"):
        load_crl(der_crl + b"\x00\x01", "pck_crl")
    with pytest.raises(CollateralInvalid, match="pck_crl: DER CRL does not parse"):
        load_crl(b"\x30\x03\x02\x01\x00", "pck_crl")


def test_der_ending_in_zero_keeps_its_last_byte() -> None:
    # A DER signature may end in 0x00: only bytes after the DER object are a terminator.
    assert der.strip_terminator(b"\x30\x03\x02\x01\x00\x00\x00") == b"\x30\x03\x02\x01\x00"


def load_chain(data: bytes, name: str) -> list[x509.Certificate]:
    return parse_collateral(name, load_certificates, data)


def test_chains() -> None:
    chain = load_chain((SPR_DIR / "tcb_info_issuer_chain.pem").read_bytes() + b"\x00", "c")
    assert len(chain) == 2
    assert load_chain(chain[0].public_bytes(Encoding.DER), "c") == [chain[0]]
    assert load_chain(chain[0].public_bytes(Encoding.DER) + b"\x00", "c") == [chain[0]]
    with pytest.raises(CollateralInvalid, match="c: certificate bundle does not parse"):
        load_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "c")


@settings(max_examples=80, deadline=None)
@given(position=st.integers(min_value=0, max_value=2400), value=st.integers(1, 255))
def test_mutated_tcb_info_raises_only_collateral_errors(position: int, value: int) -> None:
    original = _tdx_tcb_info()
    signed = parse_tcb_info(original)
    start = original.index(signed.signed_bytes)
    data = bytearray(original)
    position %= len(data)
    data[position] ^= value
    if start <= position < start + len(signed.signed_bytes):
        with pytest.raises(CollateralInvalid):  # the signed member: never accepted
            verify_collateral_signature(parse_tcb_info(bytes(data)), SIGNER, "TCB Info")
        return
    try:
        mutated = parse_tcb_info(bytes(data))
        verify_collateral_signature(mutated, SIGNER, "TCB Info")
    except CollateralInvalid:
        return
    # Outside the signed member a flip can leave the meaning intact: the case of a hex digit
    # of the signature, whitespace or a NUL after the document. What verified is the original.
    assert (mutated.signed_bytes, mutated.signature) == (signed.signed_bytes, signed.signature)
