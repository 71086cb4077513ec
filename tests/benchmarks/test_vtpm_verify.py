"""The vTPM benchmark runs (numbers are reported, never asserted: no timed assertions)."""

from __future__ import annotations

import pytest

from benchmarks.vtpm_verify import main, measure


def test_measure_real_vector() -> None:
    result = measure(seconds=0.01)
    assert result.bundle_per_s > 0
    assert result.cost == result.report_per_s / result.bundle_per_s


def test_main_prints_both_rates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "SNP report alone, chain cached" in out
    assert "snp-vtpm bundle, chain cached" in out
