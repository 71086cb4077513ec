"""Each lookup test module defines ``vendor`` (what the fake KDS/PCS serves); ``http`` is a
client whose transport is that fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.unit.collateral.fakes import FakeVendor


@pytest.fixture
async def http(vendor: FakeVendor) -> AsyncIterator[httpx.AsyncClient]:
    async with vendor.client() as client:
        yield client
