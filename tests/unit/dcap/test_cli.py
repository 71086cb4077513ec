"""``keybroker evidence verify --tee tdx|sgx``: one JSON object, exit 0/1/2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.evidence.claims import Tee
from broker.evidence.dcap.verify import clear_caches
from broker.simulate.intel import IntelKit

from .vectors import (
    DEBUG_TD_QUOTE,
    GCP_DIR,
    GCP_QUOTE,
    SIGNAL_2023_DIR,
    SIGNAL_2023_QUOTE,
    SPR_DIR,
    spr_quote,
)

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
CONTRACT = {"verified", "tee", "signer", "claims", "error"}


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["evidence", "verify", *args])
    out = capsys.readouterr().out
    return status, json.loads(out) if out else {}


def test_debug_td_with_a_collateral_directory(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = run(
        capsys,
        "--tee",
        "tdx",
        str(DEBUG_TD_QUOTE),
        "--collateral",
        str(SPR_DIR),
        "--at",
        "2023-07-01T01:00:00Z",
    )
    assert status == 0
    assert set(result) == CONTRACT
    assert result["verified"] is True
    assert result["error"] is None
    assert result["signer"]["root"] == "intel-sgx-root-ca"
    claims = result["claims"]
    assert claims["debug"] is True
    assert claims["tcb_status"] == "UpToDate"
    assert claims["td_attributes"]["debug"] is True


def test_explicit_flags(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = run(
        capsys,
        "--tee",
        "sgx",
        str(SIGNAL_2023_QUOTE),
        "--tcb-info",
        str(SIGNAL_2023_DIR / "tcbInfo.json"),
        "--qe-identity",
        str(SIGNAL_2023_DIR / "qeIdentity.json"),
        "--pck-crl",
        str(SIGNAL_2023_DIR / "pck_platform_crl.der"),
        "--root-crl",
        str(SIGNAL_2023_DIR / "root_ca_crl.der"),
        "--tcb-signing-chain",
        str(SIGNAL_2023_DIR / "tcb_issuer_chain.pem"),
        "--pck-chain",
        str(SIGNAL_2023_DIR / "pck_chain.pem"),
        "--at",
        "1674105089",
    )
    assert status == 0
    assert result["claims"]["tcb_status"] == "SWHardeningNeeded"
    assert result["claims"]["advisory_ids"] == ["INTEL-SA-00615", "INTEL-SA-00657"]


def test_tcb_level_not_found(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    quote = tmp_path / "spr.dat"
    quote.write_bytes(spr_quote())
    status, result = run(
        capsys, "--tee", "tdx", str(quote), "--collateral", str(SPR_DIR), "--at", "1688173200"
    )
    assert status == 1
    # A failure also says what the evidence states unverified: SNP's only, so far.
    assert set(result) == {*CONTRACT, "unverified_claims"}
    assert result["unverified_claims"] is None
    assert result["verified"] is False
    assert result["claims"] is None
    assert result["error"]["type"] == "tcb-level-not-found"


def test_collateral_expired(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = run(
        capsys,
        "--tee",
        "tdx",
        str(DEBUG_TD_QUOTE),
        "--collateral",
        str(SPR_DIR),
        "--at",
        "2023-08-01T00:00:00Z",
    )
    assert status == 1
    assert result["error"]["type"] == "collateral-expired"


def test_collateral_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    status, result = run(capsys, "--tee", "tdx", str(GCP_QUOTE), "--collateral", str(GCP_DIR))
    assert status == 1
    assert result["error"]["type"] == "collateral-unavailable"
    assert "event log replay to RTMR0-3" in result["error"]["detail"]


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[IntelKit, Path]:
    directory = tmp_path_factory.mktemp("intel-kit")
    kit = IntelKit.create(now=NOW)
    kit.write_collateral(directory, Tee.TDX, now=NOW)
    return kit, directory


def test_simulated_qe_identity_mismatch(
    capsys: pytest.CaptureFixture[str], kit_dir: tuple[IntelKit, Path], tmp_path: Path
) -> None:
    kit, directory = kit_dir
    quote = tmp_path / "quote.dat"
    quote.write_bytes(kit.tdx_quote())
    identity = tmp_path / "qe.json"
    identity.write_bytes(kit.qe_identity(Tee.TDX, now=NOW, mrsigner=b"\x01" * 32))
    common = ["--tee", "tdx", str(quote), "--collateral", str(directory), "--at", NOW.isoformat()]
    roots = ["--insecure-test-root", str(directory / "root.pem")]
    status, result = run(capsys, *common, *roots)
    assert status == 0
    assert result["signer"]["root"] == "insecure-test-cli-0"
    status, result = run(capsys, *common, *roots, "--qe-identity", str(identity))
    assert status == 1
    assert result["error"]["type"] == "qe-identity-mismatch"
    # Without the test root the same quote does not chain to Intel.
    status, result = run(capsys, *common)
    assert status == 1
    assert result["error"]["type"] == "chain-invalid"


def test_padding_is_reported_as_a_warning(
    capsys: pytest.CaptureFixture[str], kit_dir: tuple[IntelKit, Path], tmp_path: Path
) -> None:
    kit, directory = kit_dir
    quote = tmp_path / "padded.dat"
    quote.write_bytes(kit.tdx_quote() + bytes(100))
    status, result = run(
        capsys,
        "--tee",
        "tdx",
        str(quote),
        "--collateral",
        str(directory),
        "--insecure-test-root",
        str(directory / "root.pem"),
        "--at",
        NOW.isoformat(),
    )
    assert status == 0
    assert result["warnings"] == ["quote is followed by 100 bytes of zero padding (ignored)"]


def test_malformed_quote(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    quote = tmp_path / "short.dat"
    quote.write_bytes(DEBUG_TD_QUOTE.read_bytes()[:700])
    status, result = run(capsys, "--tee", "tdx", str(quote))
    assert status == 1
    assert result["error"]["type"] == "malformed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tee", "sgx", str(SIGNAL_2023_QUOTE), "--event-log", "/dev/null"], "does not apply"),
        (["--tee", "tdx", str(DEBUG_TD_QUOTE), "--collateral", "/nonexistent"], "not a directory"),
        (["--tee", "tdx", "/nonexistent/quote"], "cannot read"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    status = main(["evidence", "verify", *args])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert message in captured.err
