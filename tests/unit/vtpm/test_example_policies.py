"""The shipped vTPM example policies decide the real vectors as docs/vtpm.md's worked
examples say (``keybroker policy eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cli import main
from tests.unit.policy.support import REPO
from tests.unit.tpm.vectors import NO_NONCE, NONCE9009
from tests.unit.vtpm.vectors import SNP_DIR

AZURE = REPO / "policies" / "azure-cvm-disk-key.yaml"
GCE = REPO / "policies" / "gce-shielded-vm.yaml"


def _eval(
    capsys: pytest.CaptureFixture[str], policy: Path, tee: str, evidence: Path
) -> tuple[int, list[str]]:
    """Exit status, and the claims of the clauses that failed."""
    argv = ["policy", "eval", str(policy), "--tee", tee, str(evidence), "--json"]
    status = main([*argv, "--at", "2026-01-01T00:00:00Z"])
    result = json.loads(capsys.readouterr().out)
    return status, [c["claim"] for c in result["explanation"] if not c["passed"]]


def test_the_azure_example_admits_its_approved_vm(capsys: pytest.CaptureFixture[str]) -> None:
    assert _eval(capsys, AZURE, "az-snp-vtpm", SNP_DIR / "evidence-v2.json") == (0, [])


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-genoa.json"])
def test_the_azure_example_refuses_another_vm_by_its_image(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    status, failed = _eval(capsys, AZURE, "az-snp-vtpm", SNP_DIR / name)
    assert status == 1
    assert failed[0] == "measurement, tpm.pcrs.sha256.4, tpm.pcrs.sha256.7"


@pytest.mark.parametrize("path", [NONCE9009, NO_NONCE], ids=lambda path: path.stem)
def test_the_gce_example_admits_the_cos85_vm(
    capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    assert _eval(capsys, GCE, "tpm", path) == (0, [])


def test_the_gce_example_refuses_an_azure_vm(capsys: pytest.CaptureFixture[str]) -> None:
    status, failed = _eval(capsys, GCE, "az-snp-vtpm", SNP_DIR / "evidence-v2.json")
    assert (status, failed) == (1, ["tee"])
