"""Challenge nonces: 32 random bytes, stored with an expiry, consumed at most once."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import asyncpg

from broker.errors import NonceExpired, NonceReplayed, NonceUnknown
from broker.store.database import Database

NONCE_BYTES = 32


async def issue(db: Database, tee: str, now: datetime, ttl_seconds: int) -> tuple[bytes, datetime]:
    nonce = secrets.token_bytes(NONCE_BYTES)
    expires_at = now + timedelta(seconds=ttl_seconds)
    async with db.connection() as conn:
        await conn.execute(db.q["insert_challenge"], nonce, tee, expires_at)
    return nonce, expires_at


async def consume(
    conn: asyncpg.Connection, queries: dict[str, str], nonce: bytes, tee: str, now: datetime
) -> None:
    """Mark ``nonce`` consumed inside the caller's transaction, or say why it cannot be.

    The conditional UPDATE is the atomic step: of many concurrent consumers exactly one
    matches the row; the others wait for its lock, then see ``consumed_at`` set.
    """
    if await conn.fetchval(queries["consume_challenge"], nonce, tee, now) is not None:
        return
    state = await conn.fetchrow(queries["challenge_state"], nonce)
    if state is None:
        raise NonceUnknown("nonce was not issued by this broker")
    if state["tee"] != tee:
        raise NonceUnknown(f"nonce was issued for tee '{state['tee']}', not '{tee}'")
    if state["consumed_at"] is not None:
        raise NonceReplayed("nonce was already used")
    raise NonceExpired(f"nonce expired at {state['expires_at'].isoformat()}")
