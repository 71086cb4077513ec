"""Shared test fixtures: paths to the real vectors and a fixed clock helper."""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    return VECTORS
