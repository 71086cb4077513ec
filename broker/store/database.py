"""The asyncpg pool, named queries, and the one place database failures become 503s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from broker.errors import ConfigurationError, DatabaseUnavailable
from broker.store.sqlfiles import queries

# Failures that mean "the database is not usable now", as opposed to a bug or a constraint
# violation. They become DatabaseUnavailable (HTTP 503) and the request releases nothing.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TooManyConnectionsError,
    # Credentials refused, or a failover left us on a read-only standby: not the caller's
    # fault, and nothing may be released until the database is writable again.
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip when a connection returns to the pool.

    asyncpg still rolls back a transaction left open; its default reset would then also run
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` (one more round trip per
    use). The broker leaves none of that behind: its advisory locks are transaction-scoped,
    it opens no cursor outside a transaction, never LISTENs and never SETs.
    """


ACQUIRE_TIMEOUT_S = 10


class Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.q = queries()

    @classmethod
    async def connect(cls, dsn: str, min_size: int = 2, max_size: int = 10) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=30,
                # A statement cache per connection: named queries are prepared once.
                statement_cache_size=256,
                reset=_keep_session,
                max_inactive_connection_lifetime=0,
            )
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL: {type(exc).__name__}"
            ) from None
        except ValueError:
            # asyncpg's DSN parser quotes the offending part, which may be the password.
            raise ConfigurationError("the database URL is not a valid PostgreSQL URL") from None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            conn = await self._acquire()
            try:
                yield conn
            finally:
                await self.pool.release(conn)
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction that commits when the block exits cleanly."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def _acquire(self) -> asyncpg.Connection:
        # asyncio.timeout arms one timer; asyncpg's acquire(timeout=) would wrap the wait in a
        # task of its own on every request.
        async with asyncio.timeout(ACQUIRE_TIMEOUT_S):
            return await self.pool.acquire()

    async def fetchval(self, name: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(self.q[name], *args)

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(self.q[name], *args)

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return list(await conn.fetch(self.q[name], *args))

    async def check(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")
