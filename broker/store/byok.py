"""Import wrapping keys in PostgreSQL (BYOK): their public halves and expiry; the private
halves are token objects (``hsm/byok.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import asyncpg

from broker.errors import Conflict, NotFound
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso

_INSERT: Final = query("insert_import_wrapping_key")
_GET: Final = query("import_wrapping_key")
_EXPIRED: Final = query("expired_import_wrapping_keys")
_ANY_EXPIRED: Final = query("import_wrapping_key_expiry_due")
_MARK_DESTROYED: Final = query("mark_import_wrapping_key_destroyed")


async def insert(
    db: Database, key_id: str, public_der: bytes, *, now: datetime, actor: str, expires: datetime
) -> None:
    await db.execute(_INSERT, key_id, public_der, now, actor, expires)


async def check_usable(db: Database, key_id: str, now: datetime) -> None:
    """:class:`NotFound` when no wrapping key ``key_id`` was made; :class:`Conflict` once it
    has expired."""
    row = await db.fetchrow(_GET, key_id)
    if row is None:
        raise NotFound(f"no import wrapping key {key_id}")
    if row["destroyed_at"] is not None or row["expires_at"] <= now:
        raise Conflict(
            f"import wrapping key {key_id} expired at {iso(row['expires_at'])}; "
            "ask for another (`keybroker keys import-wrapping-key`) and wrap the key to it"
        )


async def expiry_due(db: Database, now: datetime) -> bool:
    """Whether any wrapping key expired at ``now`` still has its token object."""
    return bool(await db.fetchval(_ANY_EXPIRED, now))


async def expired(conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
    """Expired wrapping keys whose token object is still to be destroyed, locked in the
    caller's transaction."""
    return [row["id"] for row in await conn.fetch(_EXPIRED, now, limit)]


async def mark_destroyed(conn: asyncpg.Connection, key_id: str, now: datetime) -> None:
    await conn.execute(_MARK_DESTROYED, key_id, now)
