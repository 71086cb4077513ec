"""A thin pool of asyncpg connections, in place of ``asyncpg.Pool``.

Why our own: the broker is CPU bound on one core, and every release makes four database
round trips. Through ``asyncpg.Pool`` each costs about 60 µs of client CPU, against 17 µs
on a bare connection (docs/performance.md): the pool wraps every connection in a proxy
object, keeps a holder per slot, and returns a connection through ``asyncio.shield`` (a
task per release) followed by a reset round trip. What the broker needs is much less: hand
out an idle connection, take it back, open more on demand up to a limit, queue callers when
all are busy, and never hand out a connection whose state is unknown.

The rules, in one place:

* **Acquire** takes the most recently used idle connection (its statement cache and socket
  buffers are warm) with no task, no timer and no await. Only when none is idle does it arm
  one timer: open a new connection while below ``max_size``, else queue a future and wait
  (first come, first served). The timer bounds the whole wait and becomes
  ``DatabaseUnavailable`` (503).
* **Release** is synchronous. A connection that is closed, still inside a transaction, or
  whose user was interrupted (cancelled, timed out, or failed with a connection-level
  error: the caller says ``discard=True``) is terminated and its slot freed: its protocol
  state is unknown, and reconnecting is cheap. That is also how the pool follows a
  PostgreSQL restart: dead connections are dropped as they surface, and new ones are opened
  lazily, without restarting the broker.
* **No reset on release.** ``asyncpg.Pool`` resets a returned connection with
  ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``, one more round trip per
  use. The broker leaves none of that session state behind: its advisory locks are
  transaction-scoped, it opens no cursor outside a transaction, never LISTENs and never
  SETs. A transaction left open is the one state that could leak into the next user, and a
  connection in that state is dropped instead of reused.
* A slot freed while callers wait goes to the first of them, which then opens its own
  connection (within its own deadline).

It does not protect against use after release (asyncpg's proxy does): the only users are
``Database``'s context manager and helpers, which never keep a connection past their block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import asyncpg

from broker.errors import DatabaseUnavailable

Connect = Callable[[], Awaitable[asyncpg.Connection]]

# What a waiting caller is handed: a connection, or None for a free slot to open one in.
_Handed: TypeAlias = asyncpg.Connection | None


class ConnectionPool:
    def __init__(self, connect: Connect, max_size: int, acquire_timeout: float) -> None:
        self._connect = connect
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._idle: list[asyncpg.Connection] = []  # a stack: the last released goes out first
        self._busy: set[asyncpg.Connection] = set()
        self._size = 0  # idle + busy + being opened; never above max_size
        self._waiters: deque[asyncio.Future[_Handed]] = deque()
        self._closed = False
        self._drained: asyncio.Event | None = None  # set when the last slot is freed after close

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Callers queued for a connection."""
        return len(self._waiters)

    async def open(self, count: int) -> None:
        """Open ``count`` connections now, so that start-up fails when the database does."""
        for _ in range(count):
            self._size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._size -= 1
                await self.close(0)
                raise
            self._idle.append(conn)

    async def acquire(self) -> asyncpg.Connection:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.is_closed():  # the server went away while it sat idle
                self._drop(conn)
                continue
            self._busy.add(conn)
            return conn
        return await self._acquire_slow()

    def release(self, conn: asyncpg.Connection, *, discard: bool = False) -> None:
        """Take a connection back; ``discard`` when its user was interrupted mid-conversation."""
        self._busy.discard(conn)
        if discard or self._closed or conn.is_closed() or conn.is_in_transaction():
            self._drop(conn)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def close(self, grace: float) -> None:
        """Fail the waiters, terminate idle connections, give busy ones ``grace`` seconds to
        come back, then terminate those too."""
        if self._closed:
            return
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(_closed())
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()
            self._size -= 1
        if self._size > 0:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(grace):
                    await self._drained.wait()
            except TimeoutError:
                pass
        for conn in list(self._busy):
            conn.terminate()  # their users' release will free the slots

    # --- the slow path ---------------------------------------------------------------------

    async def _acquire_slow(self) -> asyncpg.Connection:
        if self._closed:
            raise _closed()
        try:
            async with asyncio.timeout(self._acquire_timeout):
                if self._size < self._max_size:
                    self._size += 1
                    return await self._open_in_slot()
                handed = await self._wait()
                if handed is None:
                    return await self._open_in_slot()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"PostgreSQL unavailable: no connection within {self._acquire_timeout:g} s"
            ) from None
        self._busy.add(handed)
        return handed

    async def _wait(self) -> _Handed:
        waiter: asyncio.Future[_Handed] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot, then cancelled (or timed out) before it
                # could resume: pass it on rather than lose it.
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            else:
                with contextlib.suppress(ValueError):  # already taken off by release or close
                    self._waiters.remove(waiter)
            raise

    async def _open_in_slot(self) -> asyncpg.Connection:
        """Open a connection in a slot already counted in ``_size``."""
        try:
            conn = await self._connect()
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            conn.terminate()
            self._free_slot()
            raise _closed()
        self._busy.add(conn)
        return conn

    def _drop(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        self._free_slot()

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first waiter
                return
        self._size -= 1
        if self._size == 0 and self._drained is not None:
            self._drained.set()


def _closed() -> DatabaseUnavailable:
    return DatabaseUnavailable("PostgreSQL unavailable: the connection pool is closed")
