"""Trustee's evidence JSON recognised per TEE: by ``keybroker evidence verify`` (and so
``policy eval``), and by the one dispatcher the KBS adapter calls."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.evidence.trustee import looks_like_json, read_file, to_native

VECTORS = Path(__file__).parents[2] / "vectors"
GENOA = VECTORS / "kbs" / "evidence" / "snp-genoa.json"
GENOA_REPORT = VECTORS / "azure-vtpm" / "trustee-az-snp-vtpm" / "evidence-genoa.snp_report.bin"


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["evidence", "verify", *args])
    return status, json.loads(capsys.readouterr().out)


def test_genoa_json_verifies_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _verify(capsys, "--tee", "snp", str(GENOA), "--at", "2026-01-01T00:00:00Z")
    assert status == 0, result
    assert result["signer"] == {
        "vendor": "amd",
        "origin": "silicon-vendor",
        "root": "amd-ark-genoa",
        "key": "vcek",
        "product": "Genoa",
    }
    assert result["claims"]["measurement"].startswith("f57dc09a507c6ecd82369bffb600f000")


def test_flags_take_precedence_over_what_the_json_carries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    milan = VECTORS / "snp" / "amd-kds-cert-chains" / "ask_ark_milan.pem"
    status, result = _verify(
        capsys,
        "--tee",
        "snp",
        str(GENOA),
        "--cert-chain",
        str(milan),
        "--at",
        "2026-01-01T00:00:00Z",
    )
    assert status == 1
    assert result["error"]["type"] == "chain-invalid"


def test_json_outside_the_vcek_window_fails_as_raw_evidence_would(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, result = _verify(capsys, "--tee", "snp", str(GENOA), "--at", "2033-01-01T00:00:00Z")
    assert status == 1
    assert result["error"]["type"] == "certificate-expired"


def test_broken_json_is_malformed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "evidence.json"
    broken.write_text('{"attestation_report": ')
    status, result = _verify(capsys, "--tee", "snp", str(broken))
    assert status == 1
    assert result["error"] == {
        "type": "malformed",
        "detail": "evidence starts like JSON but is not valid JSON",
    }


def test_a_member_named_twice_is_malformed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doubled = tmp_path / "evidence.json"
    doubled.write_text('{"quote": "cQ==", "quote": "cg=="}')
    status, result = _verify(capsys, "--tee", "sgx", str(doubled))
    assert status == 1
    assert result["error"] == {
        "type": "malformed",
        "detail": "evidence JSON names member 'quote' twice",
    }


def test_json_of_another_tee_is_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _verify(capsys, "--tee", "tdx", str(GENOA))
    assert status == 1
    assert result["error"]["type"] == "malformed"
    assert (
        "TdxEvidence must have exactly the members cc_eventlog, quote" in result["error"]["detail"]
    )


def test_raw_evidence_is_not_json() -> None:
    assert not looks_like_json(GENOA_REPORT.read_bytes())
    assert read_file(Tee.SNP, GENOA_REPORT.read_bytes()) is None
    assert looks_like_json(b' \n\t{"quote": ""}')


def test_dispatch_per_tee() -> None:
    native = to_native(Tee.SNP, json.loads(GENOA.read_bytes()))
    assert native.evidence == GENOA_REPORT.read_bytes()
    assert sorted(native.collateral) == ["cert_chain", "vcek"]
    assert "bytes" in repr(native)
    assert "MII" not in repr(native)
    quote = base64.b64encode(b"quote").decode()
    assert to_native(Tee.SGX, {"quote": quote}).evidence == b"quote"
    tdx = to_native(Tee.TDX, {"quote": quote, "cc_eventlog": base64.b64encode(b"log").decode()})
    assert (tdx.evidence, tdx.collateral) == (b"quote", {"event_log": b"log"})
    with pytest.raises(UnsupportedEvidence, match="tee 'nitro' has no Trustee evidence form"):
        to_native(Tee.NITRO, {})
    with pytest.raises(MalformedEvidence, match="SnpEvidence must be a JSON object"):
        to_native(Tee.SNP, "report")


def test_vtpm_evidence_goes_to_its_verifier_as_trustees_json() -> None:
    """The vTPM verifiers read Trustee's forms themselves; the KBS adapter hands them the
    JSON, and only Trustee's (not keybroker's own bundle, which a KBS guest does not send)."""
    v2 = VECTORS / "azure-vtpm" / "trustee-az-snp-vtpm" / "evidence-v2.json"
    document = json.loads(v2.read_bytes())
    native = to_native(Tee.SNP_VTPM, document)
    assert (json.loads(native.evidence), native.collateral) == (document, {})
    bundle = {"hcl_report": document["hcl_report"], "tpm_quote": document["tpm_quote"]}
    message = r"primary_evidence is not Trustee's az-tdx-vtpm evidence \(an object with version"
    with pytest.raises(MalformedEvidence, match=message):
        to_native(Tee.TDX_VTPM, bundle)
    with pytest.raises(MalformedEvidence, match="not Trustee's az-snp-vtpm evidence"):
        to_native(Tee.SNP_VTPM, [document])
