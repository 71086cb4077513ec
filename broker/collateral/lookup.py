"""The shape of a store-backed collateral lookup, as the release flow calls it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Generic, TypeVar

from broker.collateral.fetcher import Fetcher
from broker.collateral.memo import ItemMemo, MemoizedRepository
from broker.collateral.store import CollateralRepository
from broker.store.collateral import CollateralStore
from broker.store.database import Database

Client = TypeVar("Client")


class StoreLookup(ABC, Generic[Client]):
    """A :data:`broker.release.collateral.Lookup`: ``await lookup(db, evidence, supplied,
    now)`` returns the collateral the evidence needs beyond ``supplied``, from the store (seen
    through an in-process memo of fresh items) or through ``client`` (None: store only).
    Tests call :meth:`resolve` with a repository of their own."""

    def __init__(
        self, client: Client | None, fetcher: Fetcher, memo: ItemMemo | None = None
    ) -> None:
        self.client = client
        self.fetcher = fetcher
        self.memo = memo if memo is not None else ItemMemo()

    async def __call__(
        self, db: Database, evidence: bytes, supplied: Mapping[str, bytes], now: datetime
    ) -> dict[str, bytes]:
        return await self.resolve(self.store(db, now), evidence, supplied, now)

    def store(self, db: Database, now: datetime) -> CollateralRepository:
        """The store of ``db`` as this lookup reads it at ``now``."""
        return MemoizedRepository(CollateralStore(db), self.memo, now)

    @abstractmethod
    async def resolve(
        self,
        store: CollateralRepository,
        evidence: bytes,
        supplied: Mapping[str, bytes],
        now: datetime,
    ) -> dict[str, bytes]: ...
