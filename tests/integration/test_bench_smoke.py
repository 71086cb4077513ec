"""``keybroker bench`` end to end at toy size: its own cluster, token and broker, one short run.

It runs as a child process (the benchmark loads SoftHSM with its own token configuration,
which a process can do only once) and asserts on the output's shape and on errors, never on
timing: performance is what the benchmark reports, not what tests check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SUMMARY_KEYS = {
    "scenario",
    "flow",
    "releases_per_s",
    "p50_ms",
    "p99_ms",
    "floor_per_s",
    "ratio",
    "cpu_ratio",
    "errors",
    "keys",
    "concurrency",
    "cpu_pinned",
}


def _bench(state_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``keybroker bench`` at toy size: short runs, 2 guests, 3 guest keys, every release
    opened and checked."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "bench",
            "--state-dir",
            str(state_dir),
            "--floor-seconds",
            "0.3",
            "--concurrency",
            "2",
            "--key-pool",
            "3",
            "--check-every",
            "1",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard only: the machine may be shared and slow
        check=False,
    )


def test_quick_bench_prints_a_table_then_the_json_line(tmp_path: Path) -> None:
    done = _bench(tmp_path / "bench", "--quick", "--duration", "1.5", "--warmup", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == SUMMARY_KEYS
    assert summary["scenario"] == "snp"
    assert summary["flow"] == "one-request"  # the headline's default
    assert summary["errors"] == 0
    assert summary["keys"] == 1
    assert summary["concurrency"] == 2
    assert summary["releases_per_s"] > 0
    assert summary["floor_per_s"] > 0
    assert any(line.startswith("one core") for line in lines), done.stdout
    assert "hsm_envelope" in done.stdout


def test_scale_run_releases_keys_that_each_hold_their_own_secret(tmp_path: Path) -> None:
    """The full sequence at toy size, scale run included: 40 preloaded keys, each its own
    secret and blob, and every release opened and compared with its key's secret."""
    done = _bench(
        tmp_path / "bench",
        *("--duration", "1", "--warmup", "0.3", "--levels", "2"),
        *("--keys", "40", "--audit-records", "100"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "preloaded 39 keys" in done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    scale_rows = [row for row in rows if row[:3] == ["one", "core,", "scale"]]
    reference_rows = [row for row in rows if row[:4] == ["one", "core,", "scale", "ref"]]
    assert [row[6] for row in reference_rows] == ["1", "1", "1"]  # keys column
    assert [row[5] for row in scale_rows if row[3] != "ref"] == ["40", "40", "40"]
    assert any(line.startswith("scale: 40 keys") for line in done.stdout.splitlines())
    assert json.loads(done.stdout.strip().splitlines()[-1])["errors"] == 0
