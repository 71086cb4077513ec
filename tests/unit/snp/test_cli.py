"""``keybroker evidence verify --tee snp``: one JSON object, exit 0/1/2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.cli import main
from tests.unit.snp.conftest import GO_SEV_GUEST, SNP, TRUSTEE_VCEK, TRUSTEE_VLEK


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | None]:
    status = main(["evidence", "verify", "--tee", "snp", *args])
    out = capsys.readouterr().out
    return status, (json.loads(out) if out else None)


def test_real_vector_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(
        capsys,
        str(TRUSTEE_VCEK.path("test-report.bin")),
        "--vcek",
        str(TRUSTEE_VCEK.path("test-vcek.der")),
        "--cert-chain",
        str(SNP / "amd-kds-cert-chains/ask_ark_milan.pem"),
        "--at",
        "2023-11-01T00:00:00Z",
    )
    assert status == 0
    assert result is not None
    assert set(result) == {"verified", "tee", "signer", "claims", "error"}
    assert result["verified"] is True
    assert result["tee"] == "snp"
    assert result["error"] is None
    assert result["signer"] == {
        "vendor": "amd",
        "origin": "silicon-vendor",
        "root": "amd-ark-milan",
        "key": "vcek",
        "product": "Milan",
    }
    claims = result["claims"]
    assert claims["measurement"] == TRUSTEE_VCEK.expected["measurement"]
    assert claims["reported_tcb"] == {
        "bootloader": 3,
        "tee": 0,
        "snp": 8,
        "microcode": 115,
        "fmc": None,
    }
    assert claims["policy"]["debug"] is False
    assert claims["debug"] is False


def test_v2_report_with_product_flag(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        str(GO_SEV_GUEST.path("attestation.bin")),
        "--vcek",
        str(GO_SEV_GUEST.path("vcek.der")),
        "--at",
        "1664000000",
    ]
    status, result = _run(capsys, *args, "--product", "Milan")
    assert (status, result and result["signer"]["product"]) == (0, "Milan")
    status, result = _run(capsys, *args, "--product", "Genoa")
    assert status == 1
    assert result is not None
    assert result["error"] == {
        "type": "collateral-invalid",
        "deprecated_type": "collateral_invalid",  # until 0.3.0 (docs/cli.md)
        "detail": result["error"]["detail"],
    }


def test_vlek_outside_its_window(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        str(TRUSTEE_VLEK.path("test-vlek-report.bin")),
        "--vlek",
        str(TRUSTEE_VLEK.path("test-vlek.der")),
    ]
    status, result = _run(capsys, *args, "--at", "2025-06-01T00:00:00Z")
    assert status == 0
    status, result = _run(capsys, *args, "--at", "2026-01-01T00:00:00Z")
    assert status == 1
    assert result == {
        "verified": False,
        "tee": "snp",
        "signer": None,
        "claims": None,
        "error": {
            "type": "certificate-expired",
            "detail": "VLEK certificate 'SEV-VLEK' expired at 2025-12-10T22:14:21+00:00 "
            "(now 2026-01-01T00:00:00+00:00)",
            "deprecated_type": "certificate_expired",  # until 0.3.0
        },
    }


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        ([], "collateral-unavailable"),
        (["--vcek", str(TRUSTEE_VCEK.path("test-vcek-invalid-new.der"))], "chain-invalid"),
        (
            [
                "--vcek",
                str(TRUSTEE_VCEK.path("test-vcek.der")),
                "--crl",
                str(TRUSTEE_VCEK.path("test-report.bin")),
            ],
            "collateral-invalid",
        ),
    ],
)
def test_failures_exit_1_with_the_error_type(
    capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    status, result = _run(
        capsys, str(TRUSTEE_VCEK.path("test-report.bin")), *flags, "--at", "2024-01-01T00:00:00Z"
    )
    assert status == 1
    assert result is not None
    assert result["verified"] is False
    assert result["error"]["type"] == error


def test_malformed_evidence_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = _run(capsys, str(TRUSTEE_VCEK.path("test-vcek.der")))
    assert status == 1
    assert result is not None
    assert set(result["error"]) == {"type", "detail"}  # no former spelling to carry
    assert result["error"]["type"] == "malformed"


@pytest.mark.parametrize(
    "args",
    [
        [str(SNP / "no-such-report.bin")],
        [str(TRUSTEE_VCEK.path("test-report.bin")), "--vcek", str(SNP / "no-such.der")],
        [str(TRUSTEE_VCEK.path("test-report.bin")), "--at", "yesterday"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    status, result = _run(capsys, *args)
    assert status == 2
    assert result is None
