"""The DCAP benchmark runs on the real vectors (numbers are reported, never asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from broker.bench import dcap_verify

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert dcap_verify.main(["--seconds", "0.001", "--vectors", str(VECTORS), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_vector_is_measured_cold_and_cached(capsys: pytest.CaptureFixture[str]) -> None:
    results = _run(capsys)
    assert [r["vector"] for r in results] == [v.name for v in dcap_verify.VECTORS]
    assert [r["status"] for r in results] == ["UpToDate", "SWHardeningNeeded", "UpToDate"]
    for result in results:
        assert {"p256_per_s", "cached_per_s", "cold_per_s", "cached_vs_p256"} <= result.keys()
        assert "dcap_qvl_per_s" not in result


def test_compare_needs_dcap_qvl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        dcap_verify.main(["--compare", "dcap-qvl", "--vectors", str(VECTORS)])
    assert exit_info.value.code == 2
    assert "pip install -e .[compare]" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("dcap_qvl") is None, reason="dcap-qvl not installed")
def test_compare_with_dcap_qvl(capsys: pytest.CaptureFixture[str]) -> None:
    results = _run(capsys, "--compare", "dcap-qvl")
    compared = [r["cold_vs_dcap_qvl"] is not None for r in results]
    assert compared == [True, True, False]  # dcap-qvl cannot read TCB Info v2


def test_vectors_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        dcap_verify.main(["--vectors", str(tmp_path / "absent")])
