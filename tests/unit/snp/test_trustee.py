"""Trustee's SnpEvidence JSON: round trips on real reports, the derived Genoa vector, and every
refusal with its exact message."""

from __future__ import annotations

import copy
import json
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import ChainInvalid, MalformedEvidence, UnsupportedEvidence
from broker.evidence.snp import VERIFIER
from broker.evidence.snp.abi import parse_report
from broker.evidence.snp.trustee import (
    REPORT_MEMBERS,
    CertTableEntry,
    SnpEvidence,
    from_report,
    parse,
)
from broker.simulate.snp import SnpKit

from .conftest import VECTORS

TESTS_VECTORS = Path(__file__).parents[2] / "vectors"
AZURE = TESTS_VECTORS / "azure-vtpm" / "trustee-az-snp-vtpm"
GENOA_JSON = TESTS_VECTORS / "kbs" / "evidence" / "snp-genoa.json"
#: Inside the Genoa VCEK's window (2025-01-24 -> 2032-01-24).
GENOA_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _der_chain(pem: Path) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem.read_bytes())]


def _genoa_chain() -> tuple[CertTableEntry, ...]:
    # PEM to DER without parsing: this VCEK has serial number 0, which cryptography warns of.
    vcek = ssl.PEM_cert_to_DER_cert((AZURE / "vcek-genoa.pem").read_text())
    ask, ark = _der_chain(TESTS_VECTORS / "snp" / "amd-kds-cert-chains" / "ask_ark_genoa.pem")
    return (
        CertTableEntry("VCEK", vcek),
        CertTableEntry("ASK", ask),
        CertTableEntry("ARK", ark),
    )


def _genoa() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(GENOA_JSON.read_bytes())
    return document


# --- the derived Genoa vector (tests/vectors/kbs/MANIFEST.md) ------------------------------


def test_genoa_vector_is_derived_as_its_manifest_says() -> None:
    raw = (AZURE / "evidence-genoa.snp_report.bin").read_bytes()
    rebuilt = json.dumps(from_report(raw, _genoa_chain()).to_json(), separators=(",", ":"))
    assert rebuilt.encode() == GENOA_JSON.read_bytes()


def test_genoa_vector_verifies_to_the_pinned_genoa_ark() -> None:
    evidence = parse(_genoa())
    assert evidence.report_bytes == (AZURE / "evidence-genoa.snp_report.bin").read_bytes()
    assert sorted(evidence.collateral()) == ["cert_chain", "vcek"]
    claims = VERIFIER.verify(evidence.report_bytes, evidence.collateral(), now=GENOA_NOW)
    assert claims.signer.root == "amd-ark-genoa"
    assert claims.lookup("reported_tcb.snp") == 23
    assert claims.lookup("measurement").startswith("f57dc09a507c6ecd")


def test_an_ark_in_cert_chain_must_be_the_pinned_one() -> None:
    document = _genoa()
    milan_ark = _der_chain(TESTS_VECTORS / "snp" / "amd-kds-cert-chains" / "ask_ark_milan.pem")[1]
    document["cert_chain"][2]["data"] = list(milan_ark)
    evidence = parse(document)
    with pytest.raises(ChainInvalid, match=r"cert_chain root 'ARK-Milan'.*is not the pinned ARK"):
        VERIFIER.verify(evidence.report_bytes, evidence.collateral(), now=GENOA_NOW)


def test_a_self_made_ark_is_refused_even_with_a_matching_ask(kit: SnpKit) -> None:
    document = _genoa()
    document["cert_chain"][1]["data"] = list(kit.ask.public_bytes(Encoding.DER))
    document["cert_chain"][2]["data"] = list(kit.ark.public_bytes(Encoding.DER))
    evidence = parse(document)
    with pytest.raises(ChainInvalid, match="is not the pinned ARK of Genoa"):
        VERIFIER.verify(evidence.report_bytes, evidence.collateral(), now=GENOA_NOW)


def test_without_cert_chain_the_vcek_must_come_from_elsewhere() -> None:
    document = _genoa()
    document["cert_chain"] = None
    evidence = parse(document)
    assert evidence.collateral() == {}
    assert evidence.to_json() == document


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_real_reports_round_trip(vector: Any) -> None:
    raw = vector.evidence()
    evidence = from_report(raw, None, turin=False)
    document = json.loads(json.dumps(evidence.to_json()))
    again = parse(document)
    assert again.report_bytes == raw
    assert again.to_json() == document


def test_azure_reports_round_trip() -> None:
    for name in ("hcl-report", "evidence-v2", "evidence-genoa"):
        raw = (AZURE / f"{name}.snp_report.bin").read_bytes()
        assert parse(from_report(raw, None, turin=False).to_json()).report_bytes == raw


@pytest.mark.parametrize("version", [2, 3, 5])
def test_synthetic_reports_round_trip(kit: SnpKit, version: int) -> None:
    overrides = {"launch_mit_vector": 3} if version == 5 else {}
    raw = kit.sign(kit.report(version=version, **overrides))
    document = from_report(raw, None, turin=False).to_json()
    report = document["attestation_report"]
    assert (report["cpuid_fam_id"] is None) == (version == 2)
    assert (report["launch_mit_vector"] is None) == (version != 5)
    assert parse(document).report_bytes == raw


def test_turin_tcbs_carry_fmc(turin_kit: SnpKit) -> None:
    raw = turin_kit.sign(turin_kit.report())
    document = from_report(raw, None).to_json()
    assert document["attestation_report"]["reported_tcb"]["fmc"] == 1
    assert parse(document).report_bytes == raw


def test_older_sev_releases_omit_the_mitigation_vectors(kit: SnpKit) -> None:
    raw = kit.sign(kit.report())
    document = from_report(raw, None).to_json()
    del document["attestation_report"]["launch_mit_vector"]
    del document["attestation_report"]["current_mit_vector"]
    assert parse(document).report_bytes == raw


def test_members_follow_virtee_sev_order(kit: SnpKit) -> None:
    document = from_report(kit.sign(kit.report()), None).to_json()
    assert tuple(document["attestation_report"]) == REPORT_MEMBERS
    assert tuple(document) == ("attestation_report", "cert_chain")


def test_reserved_tcb_bytes_cannot_be_written(kit: SnpKit) -> None:
    raw = bytearray(kit.sign(kit.report()))
    raw[0x180 + 3] = 1  # REPORTED_TCB byte 3: reserved on Milan, dropped by the serde form
    with pytest.raises(ValueError, match="reserved TCB bytes"):
        from_report(bytes(raw), None)


def test_v2_needs_to_be_told_its_layout(kit: SnpKit) -> None:
    with pytest.raises(ValueError, match="v2 report names no product"):
        from_report(kit.sign(kit.report(version=2)), None)


def test_cert_chain_entries_become_collateral(kit: SnpKit) -> None:
    vcek = kit.vcek.public_bytes(Encoding.DER)
    chain = (
        CertTableEntry("Empty", b""),
        CertTableEntry("VCEK", vcek),
        CertTableEntry("ARK", kit.ark.public_bytes(Encoding.DER)),
        CertTableEntry("ASK", kit.ask.public_bytes(Encoding.DER)),
        CertTableEntry("CRL", b"crl bytes"),
        CertTableEntry("4ab7b379-bbac-4fe4-a02f-05aef327c782", b"other", other=True),
    )
    evidence = SnpEvidence(parse_report(kit.sign(kit.report())), chain, turin=False)
    collateral = evidence.collateral()
    assert collateral["vcek"] == vcek
    assert collateral["crl"] == b"crl bytes"
    # ASK first, then ARK, whatever the table's order: the order of an AMD KDS cert_chain.
    assert collateral["cert_chain"] == kit.ask.public_bytes(Encoding.PEM) + kit.ark.public_bytes(
        Encoding.PEM
    )
    document = evidence.to_json()
    assert document["cert_chain"][5] == {
        "cert_type": {"OTHER": "4ab7b379-bbac-4fe4-a02f-05aef327c782"},
        "data": list(b"other"),
    }
    assert parse(document) == evidence


def test_a_vlek_entry_is_the_vlek_collateral(kit: SnpKit) -> None:
    chain = (CertTableEntry("VLEK", b"vlek der"),)
    evidence = SnpEvidence(parse_report(kit.sign(kit.report())), chain, turin=False)
    assert evidence.collateral() == {"vlek": b"vlek der"}


# --- refusals ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(kit: SnpKit) -> dict[str, Any]:
    raw = kit.sign(kit.report())
    chain = (CertTableEntry("VCEK", kit.vcek.public_bytes(Encoding.DER)),)
    return from_report(raw, chain).to_json()


def _edit(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(document)
    *parents, last = path.split(".")
    node = edited
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return edited


_DELETE = object()
R = "attestation_report"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cert_chain", _DELETE, "SnpEvidence lacks cert_chain"),
        ("extra", 1, "SnpEvidence has unknown members extra"),
        (f"{R}.measurement", _DELETE, "attestation_report lacks measurement"),
        (f"{R}.launch_tcb", _DELETE, "attestation_report lacks launch_tcb"),
        (f"{R}.nonsense", 0, "attestation_report has unknown members nonsense"),
        (f"{R}.measurement", [0] * 47, "measurement has 47 bytes, not 48"),
        (f"{R}.measurement.3", 256, r"measurement\[3\] must be an integer in 0..255"),
        (f"{R}.measurement.3", True, r"measurement\[3\] must be an integer in 0..255"),
        (f"{R}.measurement.3", -1, r"measurement\[3\] must be an integer in 0..255"),
        (f"{R}.chip_id", "00" * 64, "chip_id must be a list of byte values"),
        (f"{R}.version", "3", "version must be an integer in 0..4294967295"),
        (f"{R}.policy", 0x1, "POLICY 0x1: bit 17 is reserved and must be one"),
        (f"{R}.plat_info", 1 << 40, "PLATFORM_INFO 0x10000000000: reserved bits"),
        (f"{R}.key_info", 1 << 8, "SIGNER_INFO 0x100"),
        (f"{R}.reported_tcb.fmc", 1, "TCB versions disagree on fmc"),
        (f"{R}.reported_tcb.snp", 300, "reported_tcb.snp must be an integer in 0..255"),
        (f"{R}.reported_tcb.extra", 0, "reported_tcb has unknown members extra"),
        (f"{R}.current.major", None, "current.major must be an integer in 0..255"),
        (f"{R}.cpuid_step", None, "cpuid_fam_id, cpuid_mod_id and cpuid_step: all or none"),
        (f"{R}.launch_mit_vector", 0, "mitigation vectors exist in version 5\\+ reports only"),
        (f"{R}.signature.r", [0] * 71, "signature.r has 71 bytes, not 72"),
        (f"{R}.signature", [0] * 144, "signature must be a JSON object"),
        ("cert_chain", {}, "cert_chain must be a list or null"),
        ("cert_chain.0.cert_type", "ASVK", r"cert_chain\[0\].cert_type must be one of"),
        ("cert_chain.0.cert_type", {"OTHER": 1}, r"cert_chain\[0\].cert_type must be one of"),
        ("cert_chain.0.data", "MIIB", r"cert_chain\[0\].data must be a list of byte values"),
        ("cert_chain.0.extra", 1, r"cert_chain\[0\] has unknown members extra"),
    ],
)
def test_refusals(good: dict[str, Any], path: str, value: Any, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message):
        parse(_edit(good, path, value))


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("version", 4, "attestation_report.version 4 is not one of 2, 3, 5"),
        ("sig_algo", 2, r"attestation_report.sig_algo 2 is not 1 \(ECDSA P-384 with SHA-384\)"),
    ],
)
def test_unsupported(good: dict[str, Any], member: str, value: int, message: str) -> None:
    with pytest.raises(UnsupportedEvidence, match=message):
        parse(_edit(good, f"{R}.{member}", value))


def test_cpuid_must_agree_with_the_tcb_layout(good: dict[str, Any]) -> None:
    turin_cpuid = _edit(good, f"{R}.cpuid_fam_id", 0x1A)
    with pytest.raises(MalformedEvidence, match="fmc is null but CPUID 0x1a/0x01 is Turin"):
        parse(turin_cpuid)


def test_a_certificate_type_twice_is_refused(good: dict[str, Any]) -> None:
    doubled = copy.deepcopy(good)
    doubled["cert_chain"].append(doubled["cert_chain"][0])
    with pytest.raises(MalformedEvidence, match="cert_chain names VCEK twice"):
        parse(doubled)


def test_a_chain_certificate_must_be_der(good: dict[str, Any]) -> None:
    broken = copy.deepcopy(good)
    broken["cert_chain"].append({"cert_type": "ARK", "data": [48, 1, 2]})
    with pytest.raises(MalformedEvidence, match="cert_chain ARK is not a DER certificate"):
        parse(broken).collateral()


@pytest.mark.parametrize("value", [None, [], "report", 3])
def test_not_an_object(value: Any) -> None:
    with pytest.raises(MalformedEvidence, match="SnpEvidence must be a JSON object"):
        parse(value)
