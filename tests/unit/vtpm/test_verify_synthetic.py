"""The vTPM composition driven by the synthetic kits: every branch a real vector cannot
reach (VMPL, hash types, AK certificates, event logs, a TD whose collateral is at hand), and
the negative test of each check with its exact error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import (
    ChainInvalid,
    EventLogMismatch,
    MalformedEvidence,
    RuntimeDataMismatch,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence.claims import Claims, SignerOrigin, Tee
from broker.evidence.dcap.verify import clear_caches
from broker.evidence.registry import verifier_for
from broker.evidence.tpm.abi import Alg
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.tpm import DEMO_BOOT, AkAuthority, SoftwareAk, event_log, zero_pcrs
from broker.simulate.vtpm import (
    PARAVISOR_MEASUREMENT,
    VM_CONFIGURATION,
    bundle,
    hcl_report,
    runtime_data,
    snp_hcl_report,
    snp_report,
    tdx_evidence,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
NONCE = hashlib.sha384(b"challenge").digest()


@pytest.fixture(scope="module")
def kit() -> SnpKit:
    return SnpKit.generate(rsa_bits=2048)


@pytest.fixture(scope="module")
def ak() -> SoftwareAk:
    return SoftwareAk.generate()


@pytest.fixture(scope="module")
def authority() -> AkAuthority:
    return AkAuthority.generate()


def _snp(
    kit: SnpKit, evidence: bytes, collateral: dict[str, bytes] | None = None, **kw: Any
) -> Claims:
    roots = [kit.root(), *kw.pop("roots", [])]
    return verifier_for(Tee.SNP_VTPM).verify(
        evidence, {**kit.collateral(), **(collateral or {})}, now=NOW, extra_roots=roots
    )


def _evidence(kit: SnpKit, ak: SoftwareAk, **members: Any) -> bytes:
    runtime = runtime_data(ak.jwk())
    document: dict[str, Any] = {
        "hcl_report": snp_hcl_report(kit, runtime),
        "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
    }
    document.update(members)
    return bundle({k: v for k, v in document.items() if v is not None})


def test_a_synthetic_hcl_bundle_verifies(kit: SnpKit, ak: SoftwareAk) -> None:
    claims = _snp(kit, _evidence(kit, ak))
    assert claims.tee is Tee.SNP_VTPM
    assert claims.signer.origin is SignerOrigin.INFRASTRUCTURE_PROVIDER
    assert claims.signer.root == "insecure-test-snp-kit"
    fields = claims.plain_fields()
    assert fields["measurement"] == PARAVISOR_MEASUREMENT.hex()
    assert fields["tpm"]["extra_data"] == NONCE.hex()
    assert fields["vtpm"]["runtime_data"]["vm-configuration"] == dict(VM_CONFIGURATION)
    assert fields["tpm"]["event_log"] is None
    assert fields["tpm"]["boot"] is None


def test_an_snp_report_with_its_runtime_data_verifies(kit: SnpKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    evidence = bundle(
        {
            "snp_report": snp_report(kit, runtime),
            "runtime_data": runtime,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    assert _snp(kit, evidence).lookup("tpm.extra_data") == NONCE.hex()


def test_a_report_not_made_at_vmpl_0_does_not_vouch_for_the_runtime_data(
    kit: SnpKit, ak: SoftwareAk
) -> None:
    runtime = runtime_data(ak.jwk())
    evidence = _evidence(kit, ak, hcl_report=snp_hcl_report(kit, runtime, vmpl=2))
    with pytest.raises(RuntimeDataMismatch) as refused:
        _snp(kit, evidence)
    assert refused.value.detail == (
        "ATTESTATION_REPORT.VMPL 2 != 0: only the paravisor's report (VMPL 0) vouches for the "
        "runtime data"
    )


def test_the_runtime_data_may_be_hashed_with_sha384(kit: SnpKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    evidence = _evidence(kit, ak, hcl_report=snp_hcl_report(kit, runtime, hash_type=2))
    assert _snp(kit, evidence).lookup("report_data").startswith(hashlib.sha384(runtime).hexdigest())


def test_an_unknown_hash_type_is_unsupported(kit: SnpKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    report = snp_report(kit, runtime)
    hcl = hcl_report(report, runtime, report_type=2, hash_type=4).to_bytes()
    with pytest.raises(UnsupportedEvidence) as refused:
        _snp(kit, _evidence(kit, ak, hcl_report=hcl))
    assert refused.value.detail == (
        "HCL report: IGVM_REQUEST_DATA.report_data_hash_type 4 is not 1 (SHA-256), 2 (SHA-384) "
        "or 3 (SHA-512)"
    )


@pytest.mark.parametrize(
    ("field", "detail"),
    [
        (
            "report_size",
            "HCL report: report_size 1 != {size} (header, hardware report, request data and "
            "{runtime} bytes of variable data)",
        ),
        ("data_size", "HCL report: IGVM_REQUEST_DATA.data_size 1 != {data}"),
    ],
)
def test_inconsistent_sizes_are_malformed(
    kit: SnpKit, ak: SoftwareAk, field: str, detail: str
) -> None:
    runtime = runtime_data(ak.jwk())
    report = hcl_report(snp_report(kit, runtime), runtime, report_type=2)
    broken = dataclasses.replace(report, **{field: 1}).to_bytes()
    with pytest.raises(MalformedEvidence) as refused:
        _snp(kit, _evidence(kit, ak, hcl_report=broken))
    assert refused.value.detail == detail.format(
        size=report.report_size, runtime=len(runtime), data=report.data_size
    )


def test_a_quote_by_another_ak_is_a_bad_signature(kit: SnpKit, ak: SoftwareAk) -> None:
    other = SoftwareAk.generate()
    evidence = _evidence(kit, ak, tpm_quote=other.quote({Alg.SHA256: zero_pcrs()}, NONCE))
    with pytest.raises(SignatureInvalid, match="does not verify with the AK"):
        _snp(kit, evidence)


def test_the_runtime_data_of_another_vm_is_a_runtime_data_mismatch(
    kit: SnpKit, ak: SoftwareAk
) -> None:
    runtime = runtime_data(ak.jwk())
    other = runtime_data(SoftwareAk.generate().jwk())
    evidence = bundle(
        {
            "snp_report": snp_report(kit, runtime),
            "runtime_data": other,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    with pytest.raises(RuntimeDataMismatch, match=r"^REPORT_DATA\[0:32\] "):
        _snp(kit, evidence)


def test_an_azure_style_ak_certificate_names_its_root(
    kit: SnpKit, ak: SoftwareAk, authority: AkAuthority
) -> None:
    cert = authority.certify(ak.public_key()).public_bytes(Encoding.DER)
    nv_read = cert + bytes(2048 - len(cert))  # the NV index's zero padding
    evidence = _evidence(kit, ak, ak_cert=nv_read, ak_chain=[authority.chain_der()])
    claims = _snp(kit, evidence, roots=[authority.root()])
    assert claims.lookup("vtpm.ak_root") == "insecure-test-vtpm-ca"


def test_an_ak_certificate_of_another_key_fails(
    kit: SnpKit, ak: SoftwareAk, authority: AkAuthority
) -> None:
    cert = authority.certify(SoftwareAk.generate().public_key()).public_bytes(Encoding.DER)
    evidence = _evidence(kit, ak, ak_cert=cert, ak_chain=[authority.chain_der()])
    with pytest.raises(ChainInvalid, match="is not the AK that signed the quote"):
        _snp(kit, evidence, roots=[authority.root()])


def test_an_ak_certificate_to_no_trusted_root_fails(
    kit: SnpKit, ak: SoftwareAk, authority: AkAuthority
) -> None:
    cert = authority.certify(ak.public_key()).public_bytes(Encoding.DER)
    evidence = _evidence(kit, ak, ak_cert=cert, ak_chain=[authority.chain_der()])
    with pytest.raises(ChainInvalid, match="does not chain to a pinned root"):
        _snp(kit, evidence)


def test_a_measured_boot_log_gives_the_boot_facts(kit: SnpKit, ak: SoftwareAk) -> None:
    log, pcrs = event_log(DEMO_BOOT)
    evidence = _evidence(
        kit, ak, tpm_quote=ak.quote({Alg.SHA256: pcrs[Alg.SHA256]}, NONCE), event_log=log
    )
    boot = _snp(kit, evidence).lookup("tpm.boot")
    assert boot["secure_boot"] is True
    assert boot["kernel_cmdline"] == "/vmlinuz root=/dev/vda1 ro console=ttyS0"
    assert len(boot["efi_apps"]) == 3


def test_a_log_that_does_not_replay_to_the_quote_fails(kit: SnpKit, ak: SoftwareAk) -> None:
    log, _ = event_log(DEMO_BOOT)
    evidence = _evidence(kit, ak, event_log=log)  # the quote's PCRs are all zero
    with pytest.raises(EventLogMismatch, match=r"^event log replays sha256 PCR0 \(1 events\)"):
        _snp(kit, evidence)


def test_the_quote_may_come_as_collateral_but_not_twice(kit: SnpKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    hcl = snp_hcl_report(kit, runtime)
    quote = json.loads(bundle({"tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE)}))
    collateral = {"tpm_quote": json.dumps(quote["tpm_quote"]).encode()}
    assert _snp(kit, hcl, collateral).lookup("tpm.extra_data") == NONCE.hex()
    log, _ = event_log(DEMO_BOOT)
    with pytest.raises(MalformedEvidence, match="event_log is given both in the evidence"):
        _snp(kit, _evidence(kit, ak, event_log=log), {"event_log": log})


def test_evidence_that_is_no_json_and_no_hcl_report_is_malformed(kit: SnpKit) -> None:
    with pytest.raises(MalformedEvidence, match=r"^snp-vtpm evidence is not JSON"):
        _snp(kit, b"\x01\x02")


# --- TDX ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intel() -> IntelKit:
    return IntelKit.create(now=NOW)


def _tdx(intel: IntelKit, evidence: bytes) -> Claims:
    clear_caches()
    return verifier_for(Tee.TDX_VTPM).verify(
        evidence, intel.collateral(Tee.TDX, now=NOW), now=NOW, extra_roots=intel.extra_roots()
    )


def test_a_synthetic_td_verifies_with_its_collateral(intel: IntelKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    hcl, td_quote = tdx_evidence(intel, runtime)
    evidence = bundle(
        {
            "hcl_report": hcl,
            "td_quote": td_quote,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    claims = _tdx(intel, evidence)
    assert claims.tee is Tee.TDX_VTPM
    assert claims.signer.origin is SignerOrigin.INFRASTRUCTURE_PROVIDER
    assert claims.signer.key == "pck"
    assert "event_log" not in claims.plain_fields()  # the vTPM's log is tpm.event_log
    assert claims.lookup("tcb_status") == "UpToDate"
    assert claims.lookup("tpm.extra_data") == NONCE.hex()


def test_an_hcl_report_of_another_request_than_the_td_quote_fails(
    intel: IntelKit, ak: SoftwareAk
) -> None:
    runtime = runtime_data(ak.jwk())
    hcl, _ = tdx_evidence(intel, runtime)
    _, other_quote = tdx_evidence(intel, runtime_data(ak.jwk(), user_data=b"\x01" * 64))
    evidence = bundle(
        {
            "hcl_report": hcl,
            "td_quote": other_quote,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    with pytest.raises(RuntimeDataMismatch, match="the HCL report and the quote answer different"):
        _tdx(intel, evidence)


def test_a_td_quote_with_runtime_data_alone_verifies(intel: IntelKit, ak: SoftwareAk) -> None:
    runtime = runtime_data(ak.jwk())
    _, td_quote = tdx_evidence(intel, runtime)
    evidence = bundle(
        {
            "runtime_data": runtime,
            "td_quote": td_quote,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    assert _tdx(intel, evidence).tee is Tee.TDX_VTPM


def test_an_snp_hcl_report_is_not_tdx_evidence(
    kit: SnpKit, intel: IntelKit, ak: SoftwareAk
) -> None:
    runtime = runtime_data(ak.jwk())
    _, td_quote = tdx_evidence(intel, runtime)
    evidence = bundle(
        {
            "hcl_report": snp_hcl_report(kit, runtime),
            "td_quote": td_quote,
            "tpm_quote": ak.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        }
    )
    with pytest.raises(UnsupportedEvidence, match="report_type 2 \\(SEV-SNP\\) != 4 \\(TDX\\)"):
        _tdx(intel, evidence)


def test_base64_of_the_bundle_is_standard(kit: SnpKit, ak: SoftwareAk) -> None:
    document = json.loads(_evidence(kit, ak))
    document["hcl_report"] = "-" + document["hcl_report"][1:]  # a base64url letter
    with pytest.raises(MalformedEvidence) as refused:
        _snp(kit, json.dumps(document).encode())
    assert refused.value.detail == "snp-vtpm bundle.hcl_report is not standard base64"
