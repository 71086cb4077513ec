"""The forms paravisor-vTPM evidence comes in: the HCL report (every real one round trips),
the runtime data, Trustee's JSON (v0, v1, v2) and keybroker's bundle; what each refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.evidence.tpm.abi import Alg
from broker.evidence.vtpm import trustee
from broker.evidence.vtpm.bundle import from_bundle
from broker.evidence.vtpm.hcl import (
    HW_REPORT_SIZE,
    REPORT_TYPE_SNP,
    REPORT_TYPE_TDX,
    VARIABLE_DATA_OFFSET,
    parse_hcl_report,
)
from broker.evidence.vtpm.runtime import jwk_public_key, parse_runtime_data
from broker.evidence.vtpm.verify import read_evidence

from .vectors import SNP_DIR, TDX_DIR, json_document, snp_vectors


def _hcl_reports() -> list[tuple[str, bytes]]:
    reports = [
        ("snp hcl-report.bin", (SNP_DIR / "hcl-report.bin").read_bytes()),
        ("tdx hcl-report.bin", (TDX_DIR / "hcl-report.bin").read_bytes()),
    ]
    for vector in snp_vectors()[1:]:
        parsed = read_evidence(Tee.SNP_VTPM, vector.evidence, {})
        assert parsed.hcl is not None
        reports.append((vector.name, parsed.hcl.to_bytes()))
    return reports


@pytest.mark.parametrize(("name", "data"), _hcl_reports(), ids=lambda x: str(x)[:20])
def test_every_real_hcl_report_round_trips(name: str, data: bytes) -> None:
    report = parse_hcl_report(data)
    assert report.to_bytes() == data
    assert len(data) == 2600
    assert report.report_size == VARIABLE_DATA_OFFSET + len(report.variable_data)
    assert report.report_type == (REPORT_TYPE_TDX if name.startswith("tdx") else REPORT_TYPE_SNP)
    assert report.hash_type == 1
    assert not any(report.trailing)
    assert json.loads(report.variable_data)["keys"][0]["kid"] == "HCLAkPub"


def test_the_snp_report_is_at_0x20() -> None:
    data = (SNP_DIR / "hcl-report.bin").read_bytes()
    report = parse_hcl_report(data)
    assert report.snp_report() == (SNP_DIR / "hcl-report.snp_report.bin").read_bytes()
    assert report.snp_report() == data[0x20 : 0x20 + HW_REPORT_SIZE]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"HCLB" + bytes(2600), "HCL report: signature is not 'HCLA'"),
        (
            b"HCLA" + bytes(100),
            "HCL report: hardware report needs 1184 bytes at offset 32, only 72 left",
        ),
        (
            (SNP_DIR / "hcl-report.bin").read_bytes()[:1300],
            "HCL report: variable data needs 1110 bytes at offset 1236, only 64 left",
        ),
    ],
)
def test_a_damaged_hcl_report_is_malformed(data: bytes, detail: str) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        parse_hcl_report(data)
    assert refused.value.detail == detail


# --- runtime data -----------------------------------------------------------------------------


def test_the_ak_and_user_data_of_real_runtime_data() -> None:
    runtime = parse_runtime_data((SNP_DIR / "evidence-v2.runtime_data.json").read_bytes())
    assert runtime.ak().key_size == 2048  # type: ignore[union-attr]
    user_data = runtime.user_data()
    assert user_data is not None
    assert user_data[:4].hex() == "982f5c6e"


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        ({"keys": {}}, "runtime data: 'keys' is not a list of JWKs"),
        ({"keys": []}, "runtime data: 'keys' holds 0 JWKs with kid HCLAkPub, not one"),
        (
            {"keys": [{"kid": "HCLAkPub"}, {"kid": "HCLAkPub"}]},
            "runtime data: 'keys' holds 2 JWKs with kid HCLAkPub, not one",
        ),
        (
            {"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "a+b/", "e": "AQAB"}]},
            "runtime data keys[kid=HCLAkPub].n is not base64url",
        ),
    ],
)
def test_runtime_data_without_one_usable_ak_is_malformed(
    document: dict[str, Any], detail: str
) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        parse_runtime_data(json.dumps(document).encode()).ak()
    assert refused.value.detail == detail


def test_an_ak_of_another_key_type_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvidence, match=r"kty 'oct' is not RSA or EC"):
        jwk_public_key({"kty": "oct", "k": "AA"}, "jwk")


@pytest.mark.parametrize(
    ("user_data", "detail"),
    [
        (1, "runtime data: 'user-data' is not a hex string"),
        ("zz", "runtime data: 'user-data' is not hex"),
        ("00" * 32, "runtime data: 'user-data' is 32 bytes, not 64"),
    ],
)
def test_user_data_is_64_bytes_of_hex(user_data: Any, detail: str) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        parse_runtime_data(json.dumps({"user-data": user_data}).encode()).user_data()
    assert refused.value.detail == detail


def test_runtime_data_naming_a_member_twice_is_malformed() -> None:
    with pytest.raises(MalformedEvidence, match="runtime data is not JSON: duplicate member"):
        parse_runtime_data(b'{"keys":[],"keys":[]}')


# --- Trustee's forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "tee", "form"),
    [
        (SNP_DIR / "evidence-v0.json", Tee.SNP_VTPM, "trustee-v0"),
        (SNP_DIR / "evidence-v1.json", Tee.SNP_VTPM, "trustee-v1"),
        (SNP_DIR / "evidence-v2.json", Tee.SNP_VTPM, "trustee-v2"),
        (SNP_DIR / "evidence-genoa.json", Tee.SNP_VTPM, "trustee-v0"),
        (TDX_DIR / "evidence-v0.json", Tee.TDX_VTPM, "trustee-v0"),
        (TDX_DIR / "evidence-v1.json", Tee.TDX_VTPM, "trustee-v1"),
    ],
    ids=lambda x: str(x).rsplit("/", 2)[-2:][-1] if "/" in str(x) else str(x),
)
def test_trustee_forms_are_recognised_and_read(path: Any, tee: Tee, form: str) -> None:
    document = json_document(path)
    assert trustee.is_trustee(document)
    parsed = trustee.parse_trustee(document, tee)
    assert parsed.form == form
    assert parsed.user_data_bound == (form == "trustee-v2")
    assert list(parsed.tpm.quotes[0].pcrs) == [Alg.SHA256]
    assert len(parsed.tpm.quotes[0].pcrs[Alg.SHA256]) == 24
    assert ("vcek" in parsed.collateral) == (tee is Tee.SNP_VTPM)


def test_v0_and_v1_of_one_vm_read_alike() -> None:
    """Two samples of one VM (its manifest): one runtime data, one report but for its
    (randomised) ECDSA signature, one quote selection."""
    v0 = trustee.parse_trustee(json_document(SNP_DIR / "evidence-v0.json"), Tee.SNP_VTPM)
    v1 = trustee.parse_trustee(json_document(SNP_DIR / "evidence-v1.json"), Tee.SNP_VTPM)
    assert v0.runtime_data == v1.runtime_data
    assert v0.hardware[:0x2A0] == v1.hardware[:0x2A0]
    assert v0.tpm.quotes[0].pcrs == v1.tpm.quotes[0].pcrs


@pytest.mark.parametrize(
    ("mutate", "error", "detail"),
    [
        (
            lambda d: d.update(version=3),
            UnsupportedEvidence,
            "Trustee az-snp-vtpm evidence: version 3 is not 1 or 2 (or absent, v0)",
        ),
        (
            lambda d: d.update(hcl_report="a+b/"),
            MalformedEvidence,
            "Trustee az-snp-vtpm evidence.hcl_report is not padded base64url",
        ),
        (
            lambda d: d["tpm_quote"].update(pcrs=d["tpm_quote"]["pcrs"][:23]),
            MalformedEvidence,
            "Trustee az-snp-vtpm evidence.tpm_quote.pcrs lists 23 values; the quote selects 24 "
            "PCRs",
        ),
        (
            lambda d: d["tpm_quote"].update(signature="xyz"),
            MalformedEvidence,
            "Trustee az-snp-vtpm evidence.tpm_quote.signature is not hex",
        ),
        (
            lambda d: d.pop("vcek"),
            MalformedEvidence,
            "Trustee az-snp-vtpm evidence lacks the member 'vcek'",
        ),
    ],
)
def test_malformed_trustee_v1(mutate: Any, error: type[Exception], detail: str) -> None:
    document = json_document(SNP_DIR / "evidence-v1.json")
    mutate(document)
    with pytest.raises(error) as refused:
        trustee.parse_trustee(document, Tee.SNP_VTPM)
    assert refused.value.args[0] == detail


def test_a_v0_byte_array_holds_bytes_only() -> None:
    document = json_document(SNP_DIR / "evidence-v0.json")
    document["report"][5] = 256
    with pytest.raises(MalformedEvidence) as refused:
        trustee.parse_trustee(document, Tee.SNP_VTPM)
    assert refused.value.detail == (
        "Trustee az-snp-vtpm evidence.report holds a value that is not a byte (0-255)"
    )


# --- keybroker's bundle -------------------------------------------------------------------------


_BUNDLE_MEMBERS = (
    "ak_cert, ak_chain, event_log, hcl_report, runtime_data, snp_report, td_quote, tpm_quote"
)


@pytest.mark.parametrize(
    ("tee", "document", "detail"),
    [
        (
            Tee.SNP_VTPM,
            {"td_quote": ""},
            "snp-vtpm bundle has 'td_quote', which is not snp-vtpm evidence",
        ),
        (
            Tee.SNP_VTPM,
            {"hcl_report": "", "runtime_data": ""},
            "snp-vtpm bundle has both hcl_report and runtime_data; the HCL report holds its "
            "runtime data",
        ),
        (Tee.SNP_VTPM, {"snp_report": ""}, "snp-vtpm bundle needs hcl_report or runtime_data"),
        (Tee.SNP_VTPM, {"runtime_data": ""}, "snp-vtpm bundle needs snp_report"),
        (Tee.TDX_VTPM, {"runtime_data": ""}, "tdx-vtpm bundle needs td_quote"),
        (
            Tee.SNP_VTPM,
            {"quote": ""},
            f"snp-vtpm bundle member 'quote' is not one keybroker reads ({_BUNDLE_MEMBERS})",
        ),
    ],
)
def test_an_incomplete_or_ambiguous_bundle_is_malformed(
    tee: Tee, document: dict[str, Any], detail: str
) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        from_bundle(tee, document)
    assert refused.value.detail == detail


def test_an_hcl_report_and_an_snp_report_together_are_malformed() -> None:
    b64 = base64.b64encode((SNP_DIR / "hcl-report.bin").read_bytes()).decode()
    with pytest.raises(MalformedEvidence) as refused:
        from_bundle(Tee.SNP_VTPM, {"hcl_report": b64, "snp_report": b64})
    assert refused.value.detail == (
        "snp-vtpm bundle has both hcl_report and snp_report; the HCL report holds its report"
    )
