"""The re-wrap benchmark (benchmarks/kek_rewrap.py) re-seals every key it stored, on a
PostgreSQL cluster and a SoftHSM token of its own; it fails otherwise. In a child process:
SoftHSM reads its configuration once per process, and this one's serves the session token."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_benchmark_reseals_every_key() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.kek_rewrap", "--keys", "30"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^30 key versions re-sealed in [0-9.]+ s: ", done.stdout, re.MULTILINE)
