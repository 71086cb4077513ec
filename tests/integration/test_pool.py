"""The broker's own connection pool (broker/store/pool.py) against a real PostgreSQL.

Waiting, handing over, dropping connections whose state is unknown, surviving a restart and
closing. Nothing here is timed: the tests wait for the pool's own counters to move, never
for the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from broker.errors import DatabaseUnavailable
from broker.localstate.postgres import LocalPostgres
from broker.store import database
from broker.store.database import Database

pytestmark = pytest.mark.integration


async def _until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (a bounded number of loop turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail("the pool never reached the expected state")


async def _pid(conn: asyncpg.Connection) -> int:
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def _leased_pid(db: Database) -> int:
    async with db.connection() as conn:
        return await _pid(conn)


async def _queue(db: Database) -> asyncio.Task[int]:
    """A user that must wait for a connection, once it is in the queue."""
    ahead = db.pool.waiting
    task = asyncio.create_task(_leased_pid(db))
    await _until(lambda: db.pool.waiting == ahead + 1)
    return task


@pytest.fixture
async def single(cluster: LocalPostgres) -> AsyncIterator[Database]:
    """A pool of exactly one connection, so that a second user must wait."""
    db = await Database.connect(cluster.dsn(), 1, 1)
    yield db
    await db.close()


async def test_a_clean_release_reuses_the_connection(single: Database) -> None:
    async with single.connection() as conn:
        first = await _pid(conn)
    async with single.connection() as conn:
        assert await _pid(conn) == first
    with pytest.raises(ValueError, match="refused inside the block"):
        async with single.connection() as conn:
            raise ValueError("refused inside the block")  # not the connection's fault
    async with single.connection() as conn:
        assert await _pid(conn) == first
    assert (single.pool.size, single.pool.idle) == (1, 1)


async def test_a_connection_closed_while_idle_is_not_handed_out(
    single: Database, cluster: LocalPostgres
) -> None:
    async with single.connection() as conn:
        first = await _pid(conn)
    gone = asyncio.Event()
    conn.add_termination_listener(lambda _conn: gone.set())
    admin = await asyncpg.connect(cluster.dsn())
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    await gone.wait()
    async with single.connection() as conn:  # no 503: a new connection instead
        assert await _pid(conn) != first
    assert single.pool.size == 1


async def test_waiters_are_served_first_come_first_served(single: Database) -> None:
    served: list[int] = []
    pids: set[int] = set()

    async def user(n: int) -> None:
        async with single.connection() as conn:
            served.append(n)
            pids.add(await _pid(conn))

    async with single.connection() as held:
        pids.add(await _pid(held))
        users = []
        for n in range(5):
            users.append(asyncio.create_task(user(n)))
            await _until(lambda: single.pool.waiting == len(users))
    await asyncio.gather(*users)
    assert served == [0, 1, 2, 3, 4]
    assert len(pids) == 1  # handed over, never reopened
    assert (single.pool.size, single.pool.waiting) == (1, 0)


async def test_acquire_gives_up_with_database_unavailable(
    cluster: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "ACQUIRE_TIMEOUT_S", 0.05)
    db = await Database.connect(cluster.dsn(), 1, 1)
    try:
        async with db.connection():
            with pytest.raises(DatabaseUnavailable, match=r"no connection within 0\.05 s"):
                async with db.connection():
                    pass
            assert db.pool.waiting == 0
        await db.check()  # the timed-out waiter left nothing behind
        assert (db.pool.size, db.pool.idle) == (1, 1)
    finally:
        await db.close()


async def test_a_connection_left_in_a_transaction_is_dropped(single: Database) -> None:
    async with single.connection() as conn:
        first = await _pid(conn)
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1")
    assert conn.is_closed()
    assert single.pool.size == 0
    async with single.connection() as conn:
        assert await _pid(conn) != first
        assert not conn.is_in_transaction()


async def test_a_freed_slot_goes_to_the_waiter(single: Database) -> None:
    async with single.connection() as held:
        first = await _pid(held)
        waiter = await _queue(single)
        await held.execute("BEGIN")  # dropped on release: the waiter must open its own
    assert await waiter != first
    assert single.pool.size == 1


async def test_a_cancelled_user_drops_its_connection(single: Database) -> None:
    started = asyncio.Event()
    used: list[asyncpg.Connection] = []

    async def slow() -> None:
        async with single.connection() as conn:
            used.append(conn)
            started.set()
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0)  # the query is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert used[0].is_closed()  # its protocol state is unknown: never reused
    assert single.pool.size == 0
    await single.check()
    assert (single.pool.size, single.pool.idle) == (1, 1)


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on(
    single: Database,
) -> None:
    async with single.connection() as held:
        first = await _pid(held)
        early = await _queue(single)
        late = await _queue(single)
    early.cancel()  # handed the connection on release, cancelled before it could resume
    with pytest.raises(asyncio.CancelledError):
        await early
    assert await late == first
    assert (single.pool.size, single.pool.idle) == (1, 1)


async def test_close_fails_waiters_and_terminates_connections(cluster: LocalPostgres) -> None:
    db = await Database.connect(cluster.dsn(), 2, 2)
    async with db.connection() as held, db.connection():
        waiter = await _queue(db)
        closing = asyncio.create_task(db.close())
        with pytest.raises(DatabaseUnavailable, match="pool is closed"):
            await waiter
        assert not closing.done()  # busy connections get their grace period
    await closing
    assert held.is_closed()
    assert db.pool.size == 0
    with pytest.raises(DatabaseUnavailable, match="pool is closed"):
        await db.check()


async def test_close_terminates_idle_and_overdue_busy_connections(cluster: LocalPostgres) -> None:
    db = await Database.connect(cluster.dsn(), 2, 2)
    async with db.connection() as idle:
        pass
    async with db.connection() as busy:
        await db.pool.close(0)
        assert idle.is_closed()
        assert busy.is_closed()  # the grace is over: terminated under its user
    assert db.pool.size == 0


async def test_postgres_restart_is_503_then_recovers_without_reconnecting(
    tmp_path: Path,
) -> None:
    own = LocalPostgres(tmp_path)
    db = await Database.connect(own.up(), 2, 3)
    try:
        await db.check()
        own.stop()
        for _ in range(3):  # drops both dead connections, then fails to open a new one
            with pytest.raises(DatabaseUnavailable) as down:
                await db.check()
            assert down.value.detail.startswith("PostgreSQL unavailable")
        assert db.pool.size == 0
        own.start()
        await db.check()
        assert db.pool.size == 1
    finally:
        await db.close()
        own.stop()
