"""Challenge nonces: 32 random bytes, stored with an expiry, consumed at most once."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import NoReturn

import asyncpg

from broker.errors import NonceExpired, NonceReplayed, NonceUnknown
from broker.store import audit
from broker.store.audit import AuditRecord
from broker.store.database import Database

NONCE_BYTES = 32


async def issue(db: Database, tee: str, now: datetime, ttl_seconds: int) -> tuple[bytes, datetime]:
    nonce = secrets.token_bytes(NONCE_BYTES)
    expires_at = now + timedelta(seconds=ttl_seconds)
    async with db.connection() as conn:
        await conn.execute(db.q["insert_challenge"], nonce, tee, expires_at)
    return nonce, expires_at


#: Expired nonces are kept this long so that a late attest is told "expired", not "unknown".
PURGE_GRACE = timedelta(hours=1)


async def purge(db: Database, now: datetime) -> int:
    """Delete nonces that expired more than :data:`PURGE_GRACE` before ``now``; the count."""
    async with db.connection() as conn:
        status: str = await conn.execute(db.q["purge_challenges"], now - PURGE_GRACE)
    return int(status.rsplit(" ", 1)[-1])


async def consume_and_audit(
    conn: asyncpg.Connection,
    queries: dict[str, str],
    nonce: bytes,
    tee: str,
    record: AuditRecord,
) -> int | None:
    """Consume ``nonce`` at ``record.at`` and append ``record``, atomically, in one statement.

    The conditional UPDATE is the atomic step: of many concurrent consumers exactly one
    matches the row; the others wait for its lock, then see ``consumed_at`` set. Returns the
    record's sequence number, or None when the nonce could not be consumed: then nothing was
    written, and :func:`refusal` says why.
    """
    seq: int | None = await conn.fetchval(
        queries["consume_challenge_and_audit"],
        nonce,
        tee,
        record.at,
        *audit.arguments(record)[1:],
    )
    return seq


async def refusal(
    conn: asyncpg.Connection, queries: dict[str, str], nonce: bytes, tee: str
) -> NoReturn:
    """Raise the ``NonceError`` that explains why ``nonce`` was not consumable for ``tee``."""
    state = await conn.fetchrow(queries["challenge_state"], nonce)
    if state is None:
        raise NonceUnknown("nonce was not issued by this broker")
    if state["tee"] != tee:
        raise NonceUnknown(f"nonce was issued for tee '{state['tee']}', not '{tee}'")
    if state["consumed_at"] is not None:
        raise NonceReplayed("nonce was already used")
    raise NonceExpired(f"nonce expired at {state['expires_at'].isoformat()}")
