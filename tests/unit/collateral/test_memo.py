"""The in-process memo: warm, fresh items cost no store round trip; stale ones always do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from broker.collateral.keys import ItemKey
from broker.collateral.memo import ItemMemo, MemoizedRepository
from broker.collateral.store import CollateralItem
from tests.unit.collateral.fakes import MemoryStore

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
VCEK = CollateralItem(ItemKey("snp", "vcek", "Milan/00?blSPL=1"), b"vcek", None, "kds")
TCB = CollateralItem(ItemKey("tdx", "tcb_info", "00606a000000"), b"tcb", NOW + DAY, "pcs")


class CountingStore(MemoryStore):
    def __init__(self, items: Sequence[CollateralItem]) -> None:
        super().__init__(items)
        self.reads: list[list[ItemKey]] = []

    async def get_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, CollateralItem]:
        self.reads.append(list(keys))
        return await super().get_many(keys)


async def test_fresh_items_are_served_from_memory() -> None:
    inner, memo = CountingStore([VCEK, TCB]), ItemMemo()
    assert set(await MemoizedRepository(inner, memo, NOW).get_many([VCEK.key, TCB.key])) == {
        VCEK.key,
        TCB.key,
    }
    found = await MemoizedRepository(inner, memo, NOW + DAY).get_many([VCEK.key, TCB.key])
    assert found == {VCEK.key: VCEK, TCB.key: TCB}
    assert inner.reads == [[VCEK.key, TCB.key]]


async def test_stale_items_are_read_again() -> None:
    inner, memo = CountingStore([VCEK, TCB]), ItemMemo()
    await MemoizedRepository(inner, memo, NOW).get_many([VCEK.key, TCB.key])
    later = NOW + DAY + dt.timedelta(seconds=1)
    refreshed = CollateralItem(TCB.key, b"tcb2", NOW + 30 * DAY, "pcs")
    inner.items[TCB.key] = refreshed  # another replica refreshed it
    found = await MemoizedRepository(inner, memo, later).get_many([VCEK.key, TCB.key])
    assert found[TCB.key] is refreshed
    assert inner.reads[-1] == [TCB.key]  # the VCEK never goes stale


async def test_puts_and_gets_update_the_memo_and_get_asks_the_store() -> None:
    inner, memo = CountingStore([]), ItemMemo()
    view = MemoizedRepository(inner, memo, NOW)
    await view.put([VCEK])
    assert memo.fresh(VCEK.key, NOW) is VCEK
    inner.items[TCB.key] = TCB
    assert await view.get(TCB.key) is TCB
    assert memo.fresh(TCB.key, NOW) is TCB
    assert await view.get_many([VCEK.key, TCB.key]) == {VCEK.key: VCEK, TCB.key: TCB}
    assert inner.reads == []


def test_memo_is_bounded_least_recently_used_first() -> None:
    memo = ItemMemo(capacity=2)
    other = CollateralItem(ItemKey("snp", "crl", "Milan"), b"crl", None, "kds")
    memo.remember([VCEK, TCB])
    assert memo.fresh(VCEK.key, NOW) is VCEK  # VCEK now most recent
    memo.remember([other])
    assert len(memo) == 2
    assert memo.fresh(TCB.key, NOW) is None
    assert memo.fresh(VCEK.key, NOW) is VCEK
