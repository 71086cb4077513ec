"""Collateral kept in process for a few seconds, so that a warm lookup costs no round trip.

Each broker process keeps what it read from the store or fetched in a bounded LRU, and asks
PostgreSQL again for an item it lacks, one that is stale at the instant of the request, and
one it read :data:`MAX_AGE_SECONDS` ago or more. The store is the truth: what a lookup
returns is what the store held at most that long ago, so a document replaced in the store
(an operator importing a CRL that revokes a PCK, or a corrected TCB Info, before the old
one's nextUpdate) decides every attestation in every process from a few seconds after its
import on. Kept until nextUpdate instead, as it once was, such a replacement waited up to a
month for a process to see it. A busy key still costs one round trip per process every
:data:`MAX_AGE_SECONDS` instead of one per attestation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from broker.collateral.keys import ItemKey
from broker.collateral.store import CollateralItem, CollateralRepository
from broker.lru import Lru

DEFAULT_CAPACITY = 4096
MAX_AGE_SECONDS = 10.0
"""How long a process serves an item from memory after reading it from the store."""


class ItemMemo:
    """A bounded LRU of items by key (one per lookup set; the event loop is its only user),
    each served for less than ``max_age_seconds`` after it was read."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: Lru[ItemKey, tuple[float, CollateralItem]] = Lru(capacity)
        self._max_age = max_age_seconds
        self._clock = clock

    def fresh(self, key: ItemKey, now: datetime) -> CollateralItem | None:
        """The item remembered for ``key`` if it was read less than ``max_age_seconds`` ago
        and is not stale at ``now``; else None (the store is asked)."""
        entry = self._items.get(key)
        if entry is None:
            return None
        read_at, item = entry
        if self._clock() - read_at >= self._max_age or item.is_stale(now):
            return None
        return item

    def remember(self, items: Iterable[CollateralItem]) -> None:
        read_at = self._clock()
        for item in items:
            self._items.put(item.key, (read_at, item))

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
