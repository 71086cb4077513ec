"""The benchmark runs (numbers are reported, never asserted: no timed assertions)."""

from __future__ import annotations

import pytest

from benchmarks.snp_verify import BenchCase, default_case, main, measure
from broker.simulate.snp import SnpKit
from tests.unit.snp.conftest import TRUSTEE_VCEK


def test_measure_real_vector() -> None:
    case = default_case()
    assert case.evidence == TRUSTEE_VCEK.evidence()
    result = measure(case, seconds=0.01)
    assert result.cached_verify_per_s > 0
    assert result.bare_p384_per_s > 0
    assert result.ratio == result.cached_verify_per_s / result.bare_p384_per_s


def test_measure_synthetic_case(kit: SnpKit) -> None:
    case = BenchCase(
        "kit", kit.sign(kit.report()), kit.collateral(), TRUSTEE_VCEK.now, (kit.root(),)
    )
    assert measure(case, seconds=0.01).bare_p384_per_s > 0


def test_main_prints_both_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "bare ECDSA P-384 verify" in out
    assert "SNP verify, chain cached" in out
