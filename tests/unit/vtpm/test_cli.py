"""``keybroker evidence verify --tee snp-vtpm|tdx-vtpm|tpm`` on the real vectors: one JSON
object, exit 0/1/2, every input form detected from its bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from tests.unit.tpm.vectors import NONCE9009, SHA256_PCRS
from tests.unit.vtpm.vectors import CHALLENGE, SNP_DIR, TDX_DIR, V0_PCR0

AT = "2026-01-01T00:00:00Z"


def _run(
    capsys: pytest.CaptureFixture[str], tee: str, *args: str | Path
) -> tuple[int, dict[str, Any]]:
    status = main(["evidence", "verify", "--tee", tee, *map(str, args), "--at", AT])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("tee", ["az-snp-vtpm", "snp-vtpm"])
@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
def test_trustees_json_verifies(capsys: pytest.CaptureFixture[str], tee: str, name: str) -> None:
    status, result = _run(capsys, tee, SNP_DIR / name)
    assert (status, result["verified"], result["tee"], result["error"]) == (
        0,
        True,
        "snp-vtpm",
        None,
    )
    assert result["signer"] == {
        "vendor": "amd",
        "origin": "infrastructure-provider",
        "root": "amd-ark-milan",
        "key": "vcek",
        "product": "Milan",
    }
    tpm = result["claims"]["tpm"]
    assert (tpm["extra_data"], tpm["pcrs"]["sha256"]["0"]) == (CHALLENGE, V0_PCR0)
    vtpm = result["claims"]["vtpm"]
    assert vtpm["ak_root"] is None
    assert vtpm["runtime_data"]["keys"][0]["kid"] == "HCLAkPub"


def test_the_raw_hcl_report_with_its_quote_and_vcek(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """vcek.pem is the VCEK, then the Milan ASK and ARK: split into --vcek and --cert-chain."""
    bundle = (SNP_DIR / "vcek.pem").read_bytes()
    end = bundle.index(b"-----END CERTIFICATE-----\n") + len(b"-----END CERTIFICATE-----\n")
    (tmp_path / "vcek.pem").write_bytes(bundle[:end])
    (tmp_path / "chain.pem").write_bytes(bundle[end:])
    status, result = _run(
        capsys,
        "snp-vtpm",
        SNP_DIR / "hcl-report.bin",
        "--tpm-quote",
        SNP_DIR / "tpm-quote-v1.json",
        "--vcek",
        tmp_path / "vcek.pem",
        "--cert-chain",
        tmp_path / "chain.pem",
    )
    assert (status, result["verified"]) == (0, True)
    assert result["claims"]["tpm"]["extra_data"] == CHALLENGE


def test_a_raw_hcl_report_without_its_quote_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(capsys, "snp-vtpm", SNP_DIR / "hcl-report.bin")
    assert (status, result["verified"]) == (1, False)
    assert result["error"] == {
        "type": "malformed",
        "detail": "a raw HCL report needs its TPM quote as collateral tpm_quote (docs/vtpm.md)",
    }


def test_a_flipped_runtime_data_byte_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = json.loads((SNP_DIR / "evidence-v0.json").read_bytes())
    document["report"][0x4D4 + 100] ^= 1  # inside the runtime data's JSON
    (tmp_path / "flipped.json").write_text(json.dumps(document))
    status, result = _run(capsys, "az-snp-vtpm", tmp_path / "flipped.json")
    assert (status, result["error"]["type"]) == (1, "runtime-data-mismatch")
    assert result["error"]["detail"].startswith("REPORT_DATA[0:32] ")


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
def test_the_tdx_vectors_need_intels_collateral(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    status, result = _run(capsys, "az-tdx-vtpm", TDX_DIR / name)
    assert (status, result["error"]["type"]) == (1, "collateral-unavailable")
    assert result["error"]["detail"].startswith(
        "quote signature, QE report and PCK chain to intel-sgx-root-ca, runtime data and vTPM "
        "quote (docs/vtpm.md) verified, but the TCB cannot be appraised without"
    )


def test_a_gce_attestation_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(capsys, "tpm", NONCE9009)
    assert (status, result["verified"], result["tee"]) == (0, True, "tpm")
    assert result["signer"] == {
        "vendor": "google",
        "origin": "infrastructure-provider",
        "root": "google-tpm-ek-root-2018",
        "key": "ak",
        "product": None,
    }
    sha256 = result["claims"]["tpm"]["pcrs"]["sha256"]
    assert {pcr: sha256[str(pcr)] for pcr in SHA256_PCRS} == SHA256_PCRS


def test_an_ak_certificate_given_twice_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """The attestation carries its AK certificate: another one beside it is refused, since
    which one was verified would be a guess."""
    status, result = _run(
        capsys, "tpm", NONCE9009, "--ak-cert", SNP_DIR.parent / "roots/azure_vtpm_root_ca_2023.pem"
    )
    assert (status, result["error"]["type"]) == (1, "malformed")
    assert result["error"]["detail"] == "ak_cert is given both in the evidence and as collateral"


def test_a_vtpm_flag_for_another_tee_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["evidence", "verify", "--tee", "snp", str(SNP_DIR / "hcl-report.bin"), "--ak-chain", "x"]
    )
    assert status == 2
    assert capsys.readouterr().err == "keybroker: --ak-chain does not apply to --tee snp\n"
