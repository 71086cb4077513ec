"""What the micro-benchmarks' tests run them on: a synthetic SNP chip and Nitro PKI."""

from __future__ import annotations

import pytest

from broker.evidence.snp.products import Product
from broker.simulate.nitro import FakeNitroAuthority
from broker.simulate.snp import SnpKit


@pytest.fixture(scope="session")
def kit() -> SnpKit:
    return SnpKit.generate(Product.MILAN)


@pytest.fixture(scope="session")
def authority() -> FakeNitroAuthority:
    return FakeNitroAuthority.generate()
