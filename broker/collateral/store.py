"""The collateral store: vendor documents in PostgreSQL's ``collateral`` table.

One row per document, keyed by :class:`~broker.collateral.keys.ItemKey`; the body is kept as
the vendor served it (the exact bytes its signature covers). ``next_update`` is when the
issuer promises fresher data (Intel TCB Info, QE Identity, CRLs): past it an item is *stale*,
and the store's ``get_fresh`` no longer returns it. Items without one (VCEKs,
certificate chains) never go stale; their validity is the verifier's business.

Nothing here verifies anything: the store may hold whatever an operator imported or a vendor
served, and every document is verified at the instant it is used. The repository over
PostgreSQL is ``broker/store/collateral.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from broker.collateral.keys import ItemKey
from broker.timeutil import iso


@dataclass(frozen=True, slots=True)
class CollateralItem:
    key: ItemKey
    body: bytes
    next_update: datetime | None
    """When the issuer promises fresher data; None for documents that do not go stale."""
    source: str
    """Where it came from: the URL it was fetched from, or ``import <file> by <actor>``."""
    fetched_at: datetime | None = None
    """When it was stored (set by the database)."""

    def is_stale(self, now: datetime) -> bool:
        """Past its nextUpdate (the verifier refuses it from the first instant after)."""
        return is_past(self.next_update, now)

    def summary(self, now: datetime) -> dict[str, Any]:
        """What the import report shows (never the body)."""
        return Listed(
            self.key, len(self.body), self.next_update, self.fetched_at, self.source
        ).summary(now)


@dataclass(frozen=True, slots=True)
class Listed:
    """A stored item without its body, as ``keybroker collateral list`` shows it."""

    key: ItemKey
    size: int
    next_update: datetime | None
    fetched_at: datetime | None
    source: str

    def summary(self, now: datetime) -> dict[str, Any]:
        return {
            "tee": self.key.tee,
            "kind": self.key.kind,
            "lookup_key": self.key.lookup_key,
            "size": self.size,
            "next_update": iso(self.next_update),
            "fetched_at": iso(self.fetched_at),
            "source": self.source,
            "stale": is_past(self.next_update, now),
        }


def is_past(next_update: datetime | None, now: datetime) -> bool:
    """Stale: past its nextUpdate (the verifier refuses it from the first instant after)."""
    return next_update is not None and now > next_update


class CollateralRepository(Protocol):
    """What the attest-time lookups need from a store (tests substitute one in memory)."""

    async def get_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, CollateralItem]: ...

    async def get(self, key: ItemKey) -> CollateralItem | None: ...

    async def put(self, items: Iterable[CollateralItem]) -> None: ...
