"""Every real Azure vTPM vector verifies as its manifest says; a flipped quote, PCR,
signature or runtime-data byte, and the manifests' own negative cases, each fail with their
specific error."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from broker.errors import (
    CollateralUnavailable,
    MalformedEvidence,
    PcrMismatch,
    RuntimeDataMismatch,
    SignatureInvalid,
    TcbMismatch,
)
from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.verify import clear_caches
from broker.evidence.registry import verifier_for
from broker.evidence.vtpm.hcl import VARIABLE_DATA_OFFSET, parse_hcl_report
from broker.evidence.vtpm.verify import read_evidence

from .vectors import (
    AT,
    CHALLENGE,
    SNP_DIR,
    TDX_DIR,
    TDX_PCR0,
    SnpVector,
    snp_vectors,
    vcek_bundle,
)

SNP = snp_vectors()


def _snp(evidence: bytes, collateral: dict[str, bytes]) -> Claims:
    return verifier_for(Tee.SNP_VTPM).verify(evidence, collateral, now=AT)


def _tdx(evidence: bytes, collateral: dict[str, bytes] | None = None) -> Claims:
    clear_caches()
    return verifier_for(Tee.TDX_VTPM).verify(evidence, collateral or {}, now=AT)


@pytest.mark.parametrize("vector", SNP, ids=lambda v: v.name)
def test_every_snp_vector_verifies_as_its_manifest_says(vector: SnpVector) -> None:
    claims = _snp(vector.evidence, vector.collateral)
    assert claims.tee is Tee.SNP_VTPM
    assert claims.signer.origin.value == "infrastructure-provider"
    assert (claims.signer.vendor, claims.signer.key) == ("amd", "vcek")
    assert claims.signer.product == vector.product
    assert claims.signer.root == f"amd-ark-{vector.product.lower()}"
    fields = claims.plain_fields()
    assert fields["measurement"] == vector.measurement
    tcb = fields["reported_tcb"]
    assert (tcb["bootloader"], tcb["snp"], tcb["microcode"]) == (
        vector.reported_tcb & 0xFF,
        vector.reported_tcb >> 48 & 0xFF,
        vector.reported_tcb >> 56,
    )
    assert fields["vmpl"] == 0
    assert fields["tpm"]["pcrs"]["sha256"]["0"] == vector.pcr0
    assert fields["tpm"]["extra_data"] == vector.extra_data
    assert fields["vtpm"]["ak_root"] is None
    assert fields["vtpm"]["runtime_data"]["keys"][0]["kid"] == "HCLAkPub"
    assert claims.report_data is None  # the binding is the quote's extraData
    assert read_evidence(Tee.SNP_VTPM, vector.evidence, vector.collateral).form == vector.form


def test_the_runtime_data_is_the_derived_json() -> None:
    for name, runtime in (
        ("hcl-report.bin", "hcl-report.runtime_data.json"),
        ("evidence-v2.json", "evidence-v2.runtime_data.json"),
        ("evidence-genoa.json", "evidence-genoa.runtime_data.json"),
    ):
        vector = next(v for v in SNP if v.evidence == (SNP_DIR / name).read_bytes())
        parsed = read_evidence(Tee.SNP_VTPM, vector.evidence, vector.collateral)
        assert parsed.runtime_data == (SNP_DIR / runtime).read_bytes()


def test_the_v2_user_data_carries_the_nonce() -> None:
    vector = next(v for v in SNP if v.name == "v2")
    runtime = _snp(vector.evidence, {}).plain_fields()["vtpm"]["runtime_data"]
    assert runtime["user-data"].lower() == vector.extra_data + "00" * 16


# --- negatives on the raw HCL report (trustee's test_*_failure cases and flipped bytes) -----


def _hcl_vector() -> SnpVector:
    return SNP[0]


def _flip(data: bytes, at: int, value: int | None = None) -> bytes:
    flipped = bytearray(data)
    flipped[at] = value if value is not None else flipped[at] ^ 0x01
    return bytes(flipped)


def test_a_flipped_runtime_data_byte_is_a_runtime_data_mismatch() -> None:
    """trustee test_verify_report_data_failure: HCL byte 0x06e0 + 1."""
    vector = _hcl_vector()
    bad = _flip(vector.evidence, 0x06E0, vector.evidence[0x06E0] + 1)
    with pytest.raises(RuntimeDataMismatch) as refused:
        _snp(bad, vector.collateral)
    assert refused.value.detail.startswith(
        "REPORT_DATA[0:32] b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac != "
        "sha256 of the runtime data "
    )
    assert refused.value.detail.endswith(
        ": the hardware report does not vouch for this runtime data"
    )


def test_a_changed_tcb_byte_is_a_tcb_mismatch() -> None:
    """trustee test_verify_snp_report_failure: HCL byte 0x01a6 := 0 (REPORTED_TCB.SNP)."""
    vector = _hcl_vector()
    with pytest.raises(TcbMismatch, match=r"REPORTED_TCB\.SNP 0 != VCEK snpSPL 8"):
        _snp(_flip(vector.evidence, 0x01A6, 0), vector.collateral)


def test_a_damaged_ak_in_the_runtime_data_fails() -> None:
    """trustee test_verify_signature_failure2: HCL byte 0x0540 := 0 breaks the HCLAkPub JWK
    (the runtime data no longer hashes to REPORT_DATA, which is checked first)."""
    vector = _hcl_vector()
    with pytest.raises(RuntimeDataMismatch):
        _snp(_flip(vector.evidence, 0x0540, 0), vector.collateral)


def _quote_collateral(mutate: Any) -> dict[str, bytes]:
    vector = _hcl_vector()
    document = json.loads((SNP_DIR / "tpm-quote-v1.json").read_text())
    mutate(document)
    return {**vector.collateral, "tpm_quote": json.dumps(document).encode()}


def test_a_flipped_quote_byte_is_a_bad_signature() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["message"] = _flip(bytes.fromhex(doc["message"]), 60).hex()

    with pytest.raises(SignatureInvalid) as refused:
        _snp(_hcl_vector().evidence, _quote_collateral(mutate))
    assert refused.value.detail.startswith(
        "TPM quote: TPMT_SIGNATURE RSASSA/sha256 over TPMS_ATTEST does not verify with the AK"
    )


def test_a_flipped_signature_byte_is_a_bad_signature() -> None:
    """trustee test_verify_signature_failure: sig[0] ^= 1."""

    def mutate(doc: dict[str, Any]) -> None:
        doc["signature"] = _flip(bytes.fromhex(doc["signature"]), 0).hex()

    with pytest.raises(SignatureInvalid, match="does not verify with the AK"):
        _snp(_hcl_vector().evidence, _quote_collateral(mutate))


def test_a_flipped_pcr_byte_is_a_pcr_mismatch() -> None:
    """trustee test_verify_pcrs_failure: pcrs[0][0] ^= 1."""

    def mutate(doc: dict[str, Any]) -> None:
        doc["pcrs"][0] = _flip(bytes.fromhex(doc["pcrs"][0]), 0).hex()

    with pytest.raises(PcrMismatch) as refused:
        _snp(_hcl_vector().evidence, _quote_collateral(mutate))
    assert refused.value.detail.startswith("TPM quote: TPMS_QUOTE_INFO.pcrDigest ")


def test_the_quote_of_another_vm_is_a_bad_signature() -> None:
    """The v1 evidence's quote with the standalone HCL report: another VM's AK signed it."""
    v1 = json.loads((SNP_DIR / "evidence-v1.json").read_text())
    other = {**_hcl_vector().collateral, "tpm_quote": json.dumps(v1["tpm_quote"]).encode()}
    with pytest.raises(SignatureInvalid):
        _snp(_hcl_vector().evidence, other)


def test_v2_user_data_must_be_the_quotes_extra_data() -> None:
    """trustee test_verify_user_data_failure: the runtime data's user-data does not name the
    quote's challenge. The v1 evidence relabelled v2: its user-data is zeros."""
    document = json.loads((SNP_DIR / "evidence-v1.json").read_text())
    document["version"] = 2
    with pytest.raises(RuntimeDataMismatch) as refused:
        _snp(json.dumps(document).encode(), {})
    assert refused.value.detail == (
        f"runtime data user-data {'00' * 64} != the quote's extraData {CHALLENGE} zero-padded "
        "to 64 bytes, as trustee-v2 evidence promises"
    )


def test_a_raw_hcl_report_without_its_quote_is_malformed() -> None:
    with pytest.raises(MalformedEvidence) as refused:
        _snp(_hcl_vector().evidence, vcek_bundle())
    assert refused.value.detail == (
        "a raw HCL report needs its TPM quote as collateral tpm_quote (docs/vtpm.md)"
    )


def test_bytes_after_the_runtime_data_must_be_zero() -> None:
    vector = _hcl_vector()
    report = parse_hcl_report(vector.evidence)
    at = VARIABLE_DATA_OFFSET + len(report.variable_data) + 10
    with pytest.raises(MalformedEvidence) as refused:
        _snp(_flip(vector.evidence, at), vector.collateral)
    assert refused.value.detail == (
        "HCL report: 254 bytes after report_size are not all zero; only the NV index's zero "
        "padding may follow the report"
    )


def test_the_tdx_hcl_report_is_not_snp_evidence() -> None:
    tdx_hcl = (TDX_DIR / "hcl-report.bin").read_bytes()
    collateral = {**vcek_bundle(), "tpm_quote": (TDX_DIR / "tpm-quote-v1.json").read_bytes()}
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the type is asserted below
        _snp(tdx_hcl, collateral)
    assert refused.value.args[0] == (
        "HCL report: IGVM_REQUEST_DATA.report_type 4 (TDX) != 2 (SEV-SNP) for tee snp-vtpm"
    )


# --- TDX: every vTPM check passes; the TCB appraisal needs Intel collateral ------------------


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
def test_the_tdx_vectors_pass_every_vtpm_check_then_need_collateral(name: str) -> None:
    with pytest.raises(CollateralUnavailable) as refused:
        _tdx((TDX_DIR / name).read_bytes())
    assert refused.value.detail == (
        "quote signature, QE report and PCK chain to intel-sgx-root-ca, runtime data and vTPM "
        "quote (docs/vtpm.md) verified, but the TCB cannot be appraised without tcb_info, "
        "qe_identity, pck_crl, root_crl"
    )


def test_the_tdx_vtpm_parts_are_those_of_the_manifest() -> None:
    parsed = read_evidence(Tee.TDX_VTPM, (TDX_DIR / "evidence-v1.json").read_bytes(), {})
    assert parsed.hardware == (TDX_DIR / "td-quote.bin").read_bytes()
    assert parsed.runtime_data == (TDX_DIR / "hcl-report.runtime_data.json").read_bytes()
    assert parsed.tpm.quotes[0].pcrs[11][0].hex() == TDX_PCR0
    assert parsed.hcl is not None
    assert parsed.hcl.td_report_data()[:32].hex() == (
        "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
    )


def test_a_flipped_tdx_runtime_data_byte_fails_before_the_collateral() -> None:
    """trustee test_verify_hcl_var_data_failure: HCL byte 0x0880 + 1."""
    document = json.loads((TDX_DIR / "evidence-v1.json").read_text())
    hcl = base64.urlsafe_b64decode(document["hcl_report"])
    document["hcl_report"] = base64.urlsafe_b64encode(_flip(hcl, 0x0880, hcl[0x0880] + 1)).decode()
    with pytest.raises(RuntimeDataMismatch, match=r"^REPORTDATA\[0:32\] 9734504f"):
        _tdx(json.dumps(document).encode())


def test_a_flipped_tdx_quote_pcr_fails_before_the_collateral() -> None:
    document = json.loads((TDX_DIR / "evidence-v1.json").read_text())
    document["tpm_quote"]["pcrs"][7] = "00" * 32
    with pytest.raises(PcrMismatch):
        _tdx(json.dumps(document).encode())


def test_the_raw_tdx_hcl_report_with_its_quotes_verifies_alike() -> None:
    collateral = {
        "tpm_quote": (TDX_DIR / "tpm-quote-v1.json").read_bytes(),
        "td_quote": (TDX_DIR / "td-quote.bin").read_bytes(),
    }
    with pytest.raises(CollateralUnavailable):
        _tdx((TDX_DIR / "hcl-report.bin").read_bytes(), collateral)
    with pytest.raises(MalformedEvidence, match="needs its TD quote as collateral td_quote"):
        _tdx((TDX_DIR / "hcl-report.bin").read_bytes(), {"tpm_quote": collateral["tpm_quote"]})
