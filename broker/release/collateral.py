"""Collateral for verification at attest time: supplied, stored, or fetched and stored.

The request may carry collateral (``collateral`` member: name -> base64); anything it does
not supply comes from the collateral store in PostgreSQL, which ``keybroker collateral
import`` fills and the vendor fetchers (AMD KDS, Intel PCS) cache into. Each TEE says which
items its evidence needs through a ``CollateralNeeds`` function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from broker.evidence.claims import Tee
from broker.store.database import Database

# (evidence, already supplied, now) -> additional items, looked up or fetched
Lookup = Callable[[Database, bytes, Mapping[str, bytes], datetime], Awaitable[dict[str, bytes]]]


class CollateralResolver:
    def __init__(self, db: Database, lookups: Mapping[Tee, Lookup] | None = None) -> None:
        self.db = db
        self.lookups = dict(lookups or {})

    async def resolve(
        self, tee: Tee, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> Mapping[str, bytes]:
        lookup = self.lookups.get(tee)
        if lookup is None:
            return supplied
        found = await lookup(self.db, evidence, supplied, now)
        return {**found, **supplied}


def default_lookups() -> dict[Tee, Lookup]:
    """The store and fetcher lookups of every TEE that has them."""
    return {}
