"""Release limits in PostgreSQL: ``audit_release_append`` (migration 0006) through
``contexts.append_within_limits``, and the in-memory store that stands in for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from broker.localstate.postgres import LocalPostgres
from broker.store import audit, contexts
from broker.store.audit import AuditRecord
from broker.store.contexts import BoundPolicy, LimitRefused, LimitTake, ReleaseContext
from broker.store.database import Database
from broker.store.migrate import migrate
from broker.store.release import PostgresReleaseStore, ReleaseStore
from tests.fakes.release_store import MemoryReleaseStore
from tests.integration.conftest import create_database

pytestmark = pytest.mark.integration

AT = datetime(2026, 1, 1, 12, tzinfo=UTC)
DIGEST = "1" * 64
CONTEXT = ReleaseContext("k", 1, "active", "kek-1", b"\x00", 32, BoundPolicy("p", 1, DIGEST))


def _allow(at: datetime = AT) -> AuditRecord:
    return AuditRecord(at, "release", "allow", "req", "k", {"x": 1})


@pytest.fixture
async def database(cluster: LocalPostgres) -> AsyncIterator[Database]:
    dsn = await create_database(cluster)
    db = await Database.connect(dsn, 1, 60)
    async with db.connection() as conn:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length)"
            " VALUES ('k', 1, 'kek-1', '\\x00', 32)"
        )
        await conn.execute(
            "INSERT INTO policies (name, version, document, digest, created_by)"
            " VALUES ('p', 1, '{}', $1, 'test')",
            DIGEST,
        )
        await conn.execute(
            "INSERT INTO key_bindings (key_name, policy_name, updated_by) VALUES ('k', 'p', 't')"
        )
    try:
        yield db
    finally:
        await db.close()


@pytest.mark.parametrize("kind", ["postgresql", "memory"])
async def test_the_stores_take_limits_alike(database: Database, kind: str) -> None:
    store: ReleaseStore = (
        PostgresReleaseStore(database) if kind == "postgresql" else MemoryReleaseStore([CONTEXT])
    )
    hour = timedelta(hours=1)
    a, b = "snp:chip_id:aa", "snp:chip_id:bb"
    pin = LimitTake(a, pin_to_first_instance=True, max_releases=3)
    assert await store.append_within_limits(CONTEXT, _allow(), pin) == 1
    assert await store.append_within_limits(
        CONTEXT, _allow(), LimitTake(b, pin_to_first_instance=True)
    ) == LimitRefused("pin_to_first_instance", a)
    once = LimitTake(a, once_per_instance=True)
    assert await store.append_within_limits(CONTEXT, _allow(), once) == LimitRefused(
        "once_per_instance", 1
    )
    assert await store.append_within_limits(CONTEXT, _allow(), LimitTake(b, 5, True)) == 2
    rate = LimitTake(a, rate_releases=1, rate_per=hour)
    assert await store.append_within_limits(CONTEXT, _allow(AT), rate) == 3
    assert await store.append_within_limits(CONTEXT, _allow(AT + hour / 2), rate) == LimitRefused(
        "rate_per_instance", 1, AT + hour
    )
    assert await store.append_within_limits(CONTEXT, _allow(AT + hour), rate) == 4
    assert await store.append_within_limits(CONTEXT, _allow(), LimitTake(None, 4)) == (
        LimitRefused("max_releases", 4)
    )
    stale = LimitTake(None, 9)
    assert (
        await store.append_within_limits(
            ReleaseContext("k", 2, "active", "kek-1", b"\x00", 32, CONTEXT.policy), _allow(), stale
        )
        is None
    )
    # A refusal and a stale context counted nothing.
    assert await store.append_within_limits(CONTEXT, _allow(), LimitTake(None, 5)) == 5


async def test_a_release_waits_for_the_key_counter_another_holds(database: Database) -> None:
    """The counter row's lock orders two releases of one key: the second reads the count the
    first committed, whatever moment it started at."""
    take = LimitTake(None, max_releases=1)
    async with database.connection() as conn:
        # The counter row exists (an earlier refusal or release under limits made it).
        await conn.execute(
            "INSERT INTO release_counts (key_name, started_at, updated_at) VALUES ('k', $1, $1)",
            AT,
        )
    async with database.connection() as first, database.connection() as second:
        transaction = first.transaction()
        await transaction.start()
        assert await contexts.append_within_limits(first, CONTEXT, _allow(), take) == 1
        racing = asyncio.ensure_future(
            contexts.append_within_limits(second, CONTEXT, _allow(), take)
        )
        await asyncio.sleep(0.5)
        assert not racing.done()  # waiting for the first's counter row
        await transaction.commit()
        assert await asyncio.wait_for(racing, 10) == LimitRefused("max_releases", 1)
    assert await audit.counts(database) == {"release": 1}


async def test_fifty_concurrent_statements_allow_one(database: Database) -> None:
    take = LimitTake(None, max_releases=1)
    start = asyncio.Event()

    async def one() -> int | LimitRefused | None:
        async with database.connection() as conn:
            await start.wait()
            return await contexts.append_within_limits(conn, CONTEXT, _allow(), take)

    racers = [asyncio.ensure_future(one()) for _ in range(50)]
    await asyncio.sleep(0.5)
    start.set()
    outcomes = await asyncio.gather(*racers)
    assert sorted(o for o in outcomes if isinstance(o, int)) == [1]
    assert outcomes.count(LimitRefused("max_releases", 1)) == 49
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT releases FROM release_counts") == 1


async def test_no_limits_is_the_plain_append(database: Database) -> None:
    async with database.connection() as conn:
        assert await contexts.append_if_current(conn, CONTEXT, _allow()) == 1
        assert await conn.fetchval("SELECT count(*) FROM release_counts") == 0
