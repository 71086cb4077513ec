"""What the release orchestrator stores and reads: :class:`ReleaseStore`, and its
PostgreSQL implementation.

Each operation is one statement on a connection of its own, committed before it returns
(``docs/architecture.md`` §5: the audit chain's head is never locked across a round trip to
the broker). A release or an attestation therefore commits in one statement, two when its
first one wrote nothing: a replayed nonce, a context that changed, or a context read first.
A one-request release consumes its nonce in the statement that appends its record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from broker.names import KbsPath
from broker.store import audit, challenges, contexts, keys, policies
from broker.store.audit import AuditRecord
from broker.store.contexts import LimitRefused, LimitTake, ReleaseContext
from broker.store.database import Database


class ReleaseStore(Protocol):
    """The storage operations of ``broker/release/service.py`` (tests substitute one in
    memory: ``tests/fakes/release_store.py``)."""

    async def consume_nonce_and_append(
        self, nonce: bytes, tee: str, expires_at: datetime, record: AuditRecord
    ) -> int | None:
        """Record ``nonce`` (issued for ``tee``, live until ``expires_at``) as consumed and
        append ``record``, atomically. The record's sequence number; None when the nonce was
        consumed before (a replay): then nothing was written."""
        ...

    async def consume_nonce_and_append_if_current(
        self,
        nonce: bytes,
        tee: str,
        expires_at: datetime,
        context: ReleaseContext,
        record: AuditRecord,
        *,
        take: LimitTake | None,
    ) -> tuple[bool, int | LimitRefused | None]:
        """If ``context`` is still its key's current release context, record ``nonce`` as
        consumed, take the key's release limits (``take``, when the policy states any) and
        append ``record``, atomically. Whether the context was current, and the record's
        sequence number; the limit that refused (then nothing was consumed, counted or
        written); None when nothing was written otherwise (the context changed, or the nonce
        was consumed before: a replay)."""
        ...

    async def append(self, record: AuditRecord) -> int:
        """Append ``record`` unconditionally; its sequence number."""
        ...

    async def context(self, key_name: str) -> ReleaseContext | None:
        """The current release context of ``key_name``; None when no such key exists."""
        ...

    async def append_if_current(self, context: ReleaseContext, record: AuditRecord) -> int | None:
        """Append ``record`` if ``context`` is still its key's current release context. The
        record's sequence number; None when the context changed (or the key is gone): then
        nothing was written."""
        ...

    async def append_within_limits(
        self, context: ReleaseContext, record: AuditRecord, take: LimitTake
    ) -> int | LimitRefused | None:
        """Take the key's release limits (its counters move) and append ``record``, if
        ``context`` is still current, atomically. The record's sequence number; the limit
        that refused (then nothing was counted or written); None when the context changed
        (nothing was counted or written)."""
        ...

    async def key_at_path(self, path: KbsPath) -> str | None:
        """The name of the key that answers at the KBS resource ``path``; None when none
        does."""
        ...

    async def policy_document(self, name: str, version: int) -> str | None:
        """The stored document of version ``version`` of policy ``name``; None when there
        is none (policies are never deleted, so only tampering can make one vanish)."""
        ...


class PostgresReleaseStore:
    """:class:`ReleaseStore` over the broker's database."""

    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db

    async def consume_nonce_and_append(
        self, nonce: bytes, tee: str, expires_at: datetime, record: AuditRecord
    ) -> int | None:
        async with self.db.connection() as conn:
            return await challenges.consume_and_audit(
                conn, nonce, tee, expires_at=expires_at, record=record
            )

    async def consume_nonce_and_append_if_current(
        self,
        nonce: bytes,
        tee: str,
        expires_at: datetime,
        context: ReleaseContext,
        record: AuditRecord,
        *,
        take: LimitTake | None,
    ) -> tuple[bool, int | LimitRefused | None]:
        async with self.db.connection() as conn:
            return await contexts.consume_nonce_and_append_if_current(
                conn, context, record, nonce=nonce, tee=tee, expires_at=expires_at, take=take
            )

    async def append(self, record: AuditRecord) -> int:
        async with self.db.connection() as conn:
            return await audit.append(conn, record)

    async def context(self, key_name: str) -> ReleaseContext | None:
        return await contexts.read(self.db, key_name)

    async def append_if_current(self, context: ReleaseContext, record: AuditRecord) -> int | None:
        async with self.db.connection() as conn:
            return await contexts.append_if_current(conn, context, record)

    async def append_within_limits(
        self, context: ReleaseContext, record: AuditRecord, take: LimitTake
    ) -> int | LimitRefused | None:
        async with self.db.connection() as conn:
            return await contexts.append_within_limits(conn, context, record, take)

    async def key_at_path(self, path: KbsPath) -> str | None:
        return await keys.key_at_path(self.db, path)

    async def policy_document(self, name: str, version: int) -> str | None:
        stored = await policies.version(self.db, name, version)
        return None if stored is None else stored.document
