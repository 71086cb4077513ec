"""The collateral repository over PostgreSQL's ``collateral`` table.

The items and the repository's protocol are ``broker/collateral/store.py``; this is the one
module that reads and writes their rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

import asyncpg

from broker.collateral.keys import ItemKey
from broker.collateral.store import CollateralItem, Listed
from broker.store.database import Database
from broker.store.sqlfiles import query

_GET: Final = query("collateral_get")
_GET_MANY: Final = query("collateral_get_many")
_PUT: Final = query("collateral_put")
_LIST: Final = query("collateral_list")
_STATE: Final = query("collateral_state")


async def state(db: Database, now: datetime) -> list[tuple[str, str, int, int]]:
    """(tee, kind, fresh, stale) for each tee and kind the store holds items of, at ``now``."""
    return [
        (row["tee"], row["kind"], row["fresh"], row["stale"]) for row in await db.fetch(_STATE, now)
    ]


class CollateralStore:
    """A :class:`~broker.collateral.store.CollateralRepository` over PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: ItemKey) -> CollateralItem | None:
        """The stored item, stale or not."""
        row = await self.db.fetchrow(_GET, key.tee, key.kind, key.lookup_key)
        return None if row is None else _item(key, row)

    async def get_fresh(self, key: ItemKey, now: datetime) -> CollateralItem | None:
        """The stored item unless it is missing or stale at ``now``."""
        item = await self.get(key)
        return None if item is None or item.is_stale(now) else item

    async def get_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, CollateralItem]:
        """Every stored item of ``keys`` (stale ones included), in one round trip."""
        if not keys:
            return {}
        rows = await self.db.fetch(
            _GET_MANY,
            [key.tee for key in keys],
            [key.kind for key in keys],
            [key.lookup_key for key in keys],
        )
        found = {}
        for row in rows:
            key = ItemKey(row["tee"], row["kind"], row["lookup_key"])
            found[key] = _item(key, row)
        return found

    async def put(self, items: Iterable[CollateralItem]) -> None:
        """Insert or replace ``items`` in one transaction."""
        async with self.db.transaction() as conn:
            await write(conn, items)

    async def list(self) -> list[Listed]:
        """Every stored item, without bodies, ordered by tee, kind and key."""
        return [
            Listed(
                ItemKey(row["tee"], row["kind"], row["lookup_key"]),
                row["size"],
                row["next_update"],
                row["fetched_at"],
                row["source"],
            )
            for row in await self.db.fetch(_LIST)
        ]


async def write(conn: asyncpg.Connection, items: Iterable[CollateralItem]) -> None:
    """Insert or replace ``items`` inside the caller's transaction (the import audits in it)."""
    for item in items:
        key = item.key
        await conn.execute(
            _PUT, key.tee, key.kind, key.lookup_key, item.body, item.next_update, item.source
        )


def _item(key: ItemKey, row: asyncpg.Record) -> CollateralItem:
    return CollateralItem(
        key, bytes(row["body"]), row["next_update"], row["source"], row["fetched_at"]
    )
