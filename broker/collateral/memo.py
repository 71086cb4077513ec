"""Collateral kept in process while fresh, so that a warm lookup costs no database round trip.

A VCEK, a cert chain or a TCB Info does not change under its key until its nextUpdate (a
relying party may keep a CRL that long, RFC 5280 §5): each broker process keeps what it read
or fetched in a bounded LRU and asks PostgreSQL again only for items it lacks or that are
stale at the instant of the request. The cost: a document *replaced* in the store before its
nextUpdate (a corrected import) reaches a running process when its copy goes stale, or on
restart; new documents (other keys) and refreshed stale ones are seen at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from broker.collateral.keys import ItemKey
from broker.collateral.store import CollateralItem, CollateralRepository
from broker.lru import Lru

DEFAULT_CAPACITY = 4096


class ItemMemo:
    """A bounded LRU of items by key (one per lookup set; the event loop is its only user)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._items: Lru[ItemKey, CollateralItem] = Lru(capacity)

    def fresh(self, key: ItemKey, now: datetime) -> CollateralItem | None:
        item = self._items.get(key)
        if item is None or item.is_stale(now):
            return None
        return item

    def remember(self, items: Iterable[CollateralItem]) -> None:
        for item in items:
            self._items.put(item.key, item)

    def __len__(self) -> int:
        return len(self._items)


class MemoizedRepository:
    """``inner`` seen through ``memo`` at the instant ``now`` of one lookup."""

    def __init__(self, inner: CollateralRepository, memo: ItemMemo, now: datetime) -> None:
        self.inner = inner
        self.memo = memo
        self.now = now

    async def get_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, CollateralItem]:
        found: dict[ItemKey, CollateralItem] = {}
        missing = []
        for key in keys:
            item = self.memo.fresh(key, self.now)
            if item is None:
                missing.append(key)
            else:
                found[key] = item
        if missing:
            read = await self.inner.get_many(missing)
            self.memo.remember(read.values())
            found.update(read)
        return found

    async def get(self, key: ItemKey) -> CollateralItem | None:
        """Always the store's own answer (used to see a fetch another request just made)."""
        item = await self.inner.get(key)
        if item is not None:
            self.memo.remember([item])
        return item

    async def put(self, items: Iterable[CollateralItem]) -> None:
        stored = list(items)
        await self.inner.put(stored)
        self.memo.remember(stored)
