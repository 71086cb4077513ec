"""``keybroker evidence verify --tee snp``: one JSON object, exit 0/1/2."""

from __future__ import annotations

import base64
import json
from pathlib import Path
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
    assert result is not None
    # What the report states, read but not verified (the VLEK expired).
    unverified = result.pop("unverified_claims")
    assert unverified["signer_info"]["signing_key"] == "vlek"
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


def test_a_failed_verification_shows_what_the_report_says_unverified(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(GO_SEV_GUEST.path("attestation.bin")), "--vcek", str(GO_SEV_GUEST.path("vcek.der"))]
    status, verified = _run(capsys, *args, "--at", "1664000000", "--product", "Milan")
    assert status == 0
    assert verified is not None
    assert "unverified_claims" not in verified
    status, refused = _run(capsys, *args, "--at", "1664000000", "--product", "Genoa")
    assert status == 1
    assert refused is not None
    unverified = refused["unverified_claims"]
    assert unverified["measurement"] == verified["claims"]["measurement"]
    assert unverified["policy"]["debug"] == verified["claims"]["policy"]["debug"]
    assert "hint" not in refused["error"]  # SNP evidence given as SNP: no hint


def test_at_takes_unix_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(GO_SEV_GUEST.path("attestation.bin")), "--vcek", str(GO_SEV_GUEST.path("vcek.der"))]
    status, _ = _run(capsys, *args, "--product", "Milan", "--at", "1664000000000")
    assert status == 0


def test_encoded_evidence_gets_a_hint_and_format_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    encoded = tmp_path / "report.b64"
    encoded.write_bytes(base64.b64encode(GO_SEV_GUEST.path("attestation.bin").read_bytes()))
    args = ["--vcek", str(GO_SEV_GUEST.path("vcek.der")), "--product", "Milan"]
    status, refused = _run(capsys, str(encoded), *args, "--at", "1664000000")
    assert status == 1
    assert refused is not None
    assert refused["error"]["hint"] == (
        "this looks like base64; decode it (base64 -d) or pass --format base64"
    )
    assert refused["unverified_claims"] is None  # nothing parses from base64 text
    status, verified = _run(capsys, str(encoded), *args, "--at", "1664000000", "--format", "base64")
    assert status == 0
    assert verified is not None
    assert verified["verified"] is True
    assert main(["evidence", "verify", "--tee", "snp", str(encoded), *args, "--format", "hex"]) == 2
    assert "is not hex" in capsys.readouterr().err


def test_evidence_of_another_tee_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["evidence", "verify", "--tee", "tdx", str(GO_SEV_GUEST.path("attestation.bin"))])
    result = json.loads(capsys.readouterr().out)
    assert status == 1
    assert result["error"]["hint"] == "this looks like snp evidence, not tdx: pass --tee snp"
