"""The lock that serialises KEK rotations across every process sharing the database."""

from __future__ import annotations

from typing import Final

import asyncpg

from broker.errors import InternalError
from broker.store.sqlfiles import query

_LOCK_ROTATION: Final = query("lock_kek_rotation")


async def lock_rotation(conn: asyncpg.Connection) -> None:
    """Wait for, then hold until the caller's transaction ends, the one rotation lock:
    two rotations at once would each create the same next KEK label on the token."""
    if not conn.is_in_transaction():  # a lock that ended with its statement guards nothing
        raise InternalError("the KEK rotation lock was taken outside a transaction")
    await conn.execute(_LOCK_ROTATION)
