"""Fixtures: each real AWS document in turn, and one synthetic Nitro PKI per session."""

from __future__ import annotations

import pytest

from broker.simulate.nitro import FakeNitroAuthority
from tests.unit.nitro.vectors import REAL_DOCUMENTS, RealDocument


@pytest.fixture(params=REAL_DOCUMENTS, ids=lambda document: document.name.split("-20")[0])
def real(request: pytest.FixtureRequest) -> RealDocument:
    document: RealDocument = request.param
    return document


@pytest.fixture(scope="session")
def authority() -> FakeNitroAuthority:
    return FakeNitroAuthority.generate()
