"""Obtain one collateral item: from the store while fresh, else from its vendor, then stored.

The rules every lookup follows (docs/operations.md, "Collateral"):

* a stored item that is fresh at ``now`` is used as is;
* a missing or stale one is fetched when ``collateral_fetch`` is on, stored (with its
  nextUpdate) and used; a failed fetch is ``CollateralUnavailable`` (HTTP 503 at attest:
  worth retrying), and so is a vendor document that does not parse: it is the vendor's
  failure, not the evidence's, and it is never stored;
* with fetching off, a stale item is still handed to the verifier, which then reports the
  precise ``collateral-expired`` (import a fresher one); a missing required item is
  ``CollateralUnavailable``, a missing optional one is simply absent.

Concurrent requests for the same missing item wait on one lock per item, so the vendor sees
one request however many attestations arrive at once (per process: replicas each fetch once).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from broker.collateral.keys import ItemKey
from broker.collateral.store import CollateralItem, CollateralRepository
from broker.errors import CollateralInvalid, CollateralUnavailable
from broker.logs import get_logger
from broker.timeutil import iso

log = get_logger("keybroker.collateral")

Fetch = Callable[[], Awaitable[Sequence[CollateralItem]]]
"""Fetch an item from its vendor: the item first, then companions stored with it (the
issuer chain a PCS response header carries)."""

Observe = Callable[[ItemKey, str], None]
"""Told each lookup's result (``fresh``, ``stale``, ``fetched``, ``fetch_failed``,
``missing``): the broker counts them (``keybroker_collateral_lookups``)."""

_T = TypeVar("_T")


def unobserved(key: ItemKey, result: str) -> None:
    """The default :data:`Observe`: nobody counts."""


class Fetcher:
    def __init__(self, *, enabled: bool, observe: Observe = unobserved) -> None:
        self.enabled = enabled
        self._observe = observe
        self._locks: weakref.WeakValueDictionary[ItemKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, key: ItemKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def obtain(
        self,
        store: CollateralRepository,
        key: ItemKey,
        stored: CollateralItem | None,
        fetch: Fetch | None,
        now: datetime,
        *,
        required: bool = True,
        hint: str = "",
    ) -> list[CollateralItem]:
        """The item for ``key`` (first) and any companions fetched with it; an empty list
        when an optional item is neither stored nor fetchable.

        ``stored`` is what the caller read for ``key`` (one query for all its items);
        ``fetch`` None means no vendor serves it (a VLEK); ``hint`` ends the error message.
        """
        if stored is not None and not stored.is_stale(now):
            self._observe(key, "fresh")
            return [stored]
        if fetch is None or not self.enabled:
            if stored is not None:
                self._observe(key, "stale")
                return [stored]  # stale: the verifier names it in collateral-expired
            self._observe(key, "missing")
            if not required:
                return []
            reason = "collateral_fetch is off" if not self.enabled else "no vendor serves it"
            raise CollateralUnavailable(
                f"{key} is not stored and {reason}: import it with "
                f"`keybroker collateral import`{hint}"
            )
        async with self._lock(key):
            current = await store.get(key)  # another request may have fetched it meanwhile
            if current is not None and not current.is_stale(now):
                self._observe(key, "fresh")
                return [current]
            try:
                items = await _fetched(key, stored, fetch)
            except CollateralUnavailable:
                self._observe(key, "fetch_failed")
                raise
            await store.put(items)
            self._observe(key, "fetched")
        log.info(
            "collateral_fetched",
            item=str(key),
            source=items[0].source,
            next_update=iso(items[0].next_update),
            refreshed=stored is not None,
        )
        return items


async def _fetched(
    key: ItemKey, stored: CollateralItem | None, fetch: Fetch
) -> list[CollateralItem]:
    try:
        items = list(await fetch())
    except CollateralUnavailable as exc:
        if stored is None or stored.next_update is None:
            raise
        raise CollateralUnavailable(
            f"{key} expired at its nextUpdate {iso(stored.next_update)} and could not "
            f"be refreshed: {exc.detail}"
        ) from None
    except CollateralInvalid as exc:
        raise CollateralUnavailable(
            f"{key}: the vendor served an unusable document: {exc.detail}"
        ) from None
    if not items or items[0].key != key:  # a bug in the fetch function, not a vendor failure
        raise RuntimeError(f"fetch for {key} returned {[str(i.key) for i in items]}")
    return items


async def gather_all(*awaitables: Awaitable[_T]) -> list[_T]:
    """Run concurrently and wait for all; then raise the first failure, if any (so no task
    is left running or its exception unobserved)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]
