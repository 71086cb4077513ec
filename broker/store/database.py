"""The connection pool and the one place database failures become 503s.

The store's modules (``broker/store/``) are the only callers of :meth:`Database.fetchval`
and its siblings, each with the text of a named query it bound at import; everything above
the store calls their intent-named functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, LiteralString

import asyncpg

from broker.errors import ConfigurationError, DatabaseUnavailable
from broker.store.pool import ConnectionPool

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
    # asyncpg's protocol out of step with the server. Seen when PostgreSQL ends an idle
    # session (FATAL admin_shutdown on a fast stop) and the connection is used before its
    # end of file is read: the unsolicited ErrorResponse leaves the protocol waiting for a
    # ReadyForQuery that never comes ("cannot switch to state 11; another operation (2) is
    # in progress", MagicStack/asyncpg#1069). The connection is dropped; a retry reconnects.
    asyncpg.exceptions.InternalClientError,
)


ACQUIRE_TIMEOUT_S = 10
# How long close() lets busy connections finish before terminating them.
CLOSE_GRACE_S = 5.0


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}")


class _Lease:
    """``async with db.connection() as conn``: one connection from the pool for the block.

    A class rather than ``@asynccontextmanager``: no generator per use on the hot path.
    Connection-level failures become DatabaseUnavailable (503), and the connection they came
    from is dropped; so is one whose block was interrupted by a cancellation (a client that
    disconnected), since its protocol state is then unknown. Any other exception (a
    constraint violation, a refusal decided inside the block) leaves the connection usable:
    it goes back to the pool, unless a transaction is still open on it.
    """

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection = None

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            self._conn = await self._pool.acquire()
        except UNAVAILABLE as exc:
            raise _unavailable(exc) from None
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self._pool.release(self._conn)
        elif isinstance(exc, UNAVAILABLE):
            self._pool.release(self._conn, discard=True)
            raise _unavailable(exc) from None
        else:
            self._pool.release(self._conn, discard=not isinstance(exc, Exception))


class Database:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, min_size: int = 2, max_size: int = 10) -> Database:
        async def open_one() -> asyncpg.Connection:
            return await asyncpg.connect(
                dsn,
                command_timeout=30,
                # A statement cache per connection: named queries are prepared once.
                statement_cache_size=256,
            )

        pool = ConnectionPool(open_one, max_size, ACQUIRE_TIMEOUT_S)
        try:
            await pool.open(min_size)
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL: {type(exc).__name__}"
            ) from None
        except ValueError:
            # asyncpg's DSN parser quotes the offending part, which may be the password.
            raise ConfigurationError("the database URL is not a valid PostgreSQL URL") from None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close(CLOSE_GRACE_S)

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return _Lease(self.pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction that commits when the block exits cleanly."""
        async with _Lease(self.pool) as conn, conn.transaction():
            yield conn

    # One statement on a connection of its own (so committed by itself).

    async def execute(self, query: LiteralString, *args: Any) -> str:
        async with _Lease(self.pool) as conn:
            status: str = await conn.execute(query, *args)
        return status

    async def fetchval(self, query: LiteralString, *args: Any) -> Any:
        async with _Lease(self.pool) as conn:
            return await conn.fetchval(query, *args)

    async def fetchrow(self, query: LiteralString, *args: Any) -> asyncpg.Record | None:
        async with _Lease(self.pool) as conn:
            return await conn.fetchrow(query, *args)

    async def fetch(self, query: LiteralString, *args: Any) -> list[asyncpg.Record]:
        async with _Lease(self.pool) as conn:
            return list(await conn.fetch(query, *args))

    async def check(self) -> None:
        async with _Lease(self.pool) as conn:
            await conn.fetchval("SELECT 1")
