"""Consumed challenge nonces: the table that makes each nonce usable once.

Nonces are issued without touching the database (``broker/release/nonces.py``: each carries
its expiry and a MAC). A nonce is written here only when an attestation consumes it, in the
statement that appends the attestation's audit record; the row's primary key is the nonce,
so a second consumption finds it and is refused as a replay. The row keeps the nonce's
expiry so that :func:`purge` can drop it once the nonce could no longer be accepted anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import asyncpg

from broker.store.audit import AuditRecord
from broker.store.database import Database
from broker.store.sqlfiles import query

_PURGE: Final = query("purge_challenges")
_CONSUME_AND_AUDIT: Final = query("consume_challenge_and_audit")

#: Consumed nonces are kept this long after they expire. A nonce is refused by its own expiry
#: from then on, so the row is needed only while some replica could still accept it: this
#: margin covers any clock difference between the replica that purges and the one that
#: checks (nonces.MAX_CLOCK_SKEW is seconds; an hour is far beyond it).
PURGE_GRACE = timedelta(hours=1)


async def purge(db: Database, now: datetime) -> int:
    """Delete nonces that expired more than :data:`PURGE_GRACE` before ``now``; the count."""
    status = await db.execute(_PURGE, now - PURGE_GRACE)
    return int(status.rsplit(" ", 1)[-1])


async def consume_and_audit(
    conn: asyncpg.Connection,
    nonce: bytes,
    tee: str,
    *,
    expires_at: datetime,
    record: AuditRecord,
) -> int | None:
    """Record ``nonce`` as consumed at ``record.at`` and append ``record``, atomically, in one
    statement. ``nonce`` must have passed ``Nonces.check`` (issued here, for ``tee``, live).

    The insert is the atomic step: of many concurrent consumers exactly one inserts the row;
    the others wait for it to commit, then conflict and insert nothing. Returns the record's
    sequence number, or None when the nonce was consumed before (a replay): then nothing was
    written, and the caller audits the refusal.
    """
    # $4 is both the row's consumed_at and the record's at (audit_append's first argument).
    seq: int | None = await conn.fetchval(
        _CONSUME_AND_AUDIT,
        nonce,
        tee,
        expires_at,
        record.at,
        record.kind,
        record.decision,
        record.request_id,
        record.key_name,
        record.text(),
    )
    return seq
