"""A key's release context: everything a release decision and its envelope depend on.

:func:`read` resolves it in one statement (``release_context``: the key's newest version and
the policy bound to it). :func:`append_if_current` appends a release's audit record only if
that context is still the key's current one, derived again inside the same statement
(``audit_release_if_current``; with a one-request release's nonce consumed in it,
:func:`consume_nonce_and_append_if_current`): a decision taken on a remembered context
commits only if the database agrees with it when that statement starts, so a change to the key, its
binding or its policy committed before then is always honoured (one committing while the
statement runs is ordered after it, as it was after the read without the cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from broker.errors import InternalError
from broker.store.audit import AuditRecord
from broker.store.database import Database
from broker.store.sqlfiles import query

_READ: Final = query("release_context")
_APPEND_IF_CURRENT: Final = query("audit_release_if_current")
_CONSUME_AND_APPEND_IF_CURRENT: Final = query("consume_challenge_and_audit_release_if_current")


@dataclass(frozen=True, slots=True)
class BoundPolicy:
    """The policy version that decides a key's releases, as resolved from its binding."""

    name: str
    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class ReleaseContext:
    name: str
    version: int
    state: str
    kek_label: str
    wrapped_blob: bytes
    secret_length: int
    policy: BoundPolicy | None
    """None when no policy is bound (such a key is never released)."""
    exposure: str = "hsm-only"
    """Where the secret may be while released: ``hsm-only`` or ``broker-memory``
    (``hsm/jwe.py``); only the KBS path reads it."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ReleaseContext:
        """The context of a ``release_context`` row."""
        name = row["policy_name"]
        return cls(
            row["name"],
            row["version"],
            row["state"],
            row["kek_label"],
            bytes(row["wrapped_blob"]),
            row["secret_length"],
            None if name is None else BoundPolicy(name, row["policy_version"], row["digest"]),
            row["exposure"],
        )

    def arguments(self) -> tuple[Any, ...]:
        """``$1..$10`` of ``audit_release_if_current``: every field, in order."""
        policy = self.policy
        return (
            self.name,
            self.version,
            self.state,
            self.kek_label,
            self.wrapped_blob,
            self.secret_length,
            None if policy is None else policy.name,
            None if policy is None else policy.version,
            None if policy is None else policy.digest,
            self.exposure,
        )


@dataclass(frozen=True, slots=True)
class LimitTake:
    """A policy's release limits, as the release statement takes them with the key's
    counters (``audit_release_append``, migration 0006; docs/policies.md "Release
    limits")."""

    instance: str | None
    """The instance the release goes to (``broker/policy/limits.py``); None when the evidence
    names none, which only a policy without per-instance rules accepts."""
    max_releases: int | None = None
    once_per_instance: bool = False
    pin_to_first_instance: bool = False
    rate_releases: int | None = None
    rate_per: timedelta | None = None

    def arguments(self) -> tuple[Any, ...]:
        """``$16..$21`` of ``audit_release_if_current``."""
        return (
            self.instance,
            self.max_releases,
            self.once_per_instance,
            self.pin_to_first_instance,
            self.rate_releases,
            self.rate_per,
        )


#: ``$16..$21`` when the policy states no limit: the statement is then a plain append.
NO_LIMITS: Final = LimitTake(None).arguments()


@dataclass(frozen=True, slots=True)
class LimitRefused:
    """The limit that refused a release: nothing was counted or appended."""

    rule: str
    """``max_releases``, ``once_per_instance``, ``pin_to_first_instance`` or
    ``rate_per_instance``."""
    found: int | str
    """The count that reached the limit; for ``pin_to_first_instance`` the pinned instance."""
    retry_at: datetime | None = None
    """For ``rate_per_instance``: when the oldest release in the window leaves it."""


async def read(db: Database, key_name: str) -> ReleaseContext | None:
    """The current release context of ``key_name``; None when no such key exists."""
    row = await db.fetchrow(_READ, key_name)
    return None if row is None else ReleaseContext.of(row)


async def append_if_current(
    conn: asyncpg.Connection,
    context: ReleaseContext,
    record: AuditRecord,
) -> int | None:
    """Append ``record`` if ``context`` is still the key's current release context.

    One statement, outside any transaction of the caller's: committed (durably) before this
    returns. Returns the record's sequence number, or None when the context changed since it
    was read (or the key is gone): then nothing was written.
    """
    # $11..$15; the record's key_name column is the context's name, from the statement.
    seq: int | None = await conn.fetchval(
        _APPEND_IF_CURRENT, *_record_arguments(context, record), *NO_LIMITS
    )
    return seq


async def append_within_limits(
    conn: asyncpg.Connection,
    context: ReleaseContext,
    record: AuditRecord,
    take: LimitTake,
) -> int | LimitRefused | None:
    """Take the key's release limits and append ``record`` if ``context`` is still current,
    in one statement (so one transaction): the record's sequence number once both are
    committed; :class:`LimitRefused` when a limit refuses (nothing counted, nothing
    appended); None when the context changed (nothing counted, nothing appended)."""
    row = await conn.fetchrow(
        _APPEND_IF_CURRENT, *_record_arguments(context, record), *take.arguments()
    )
    return None if row is None else _taken(row)


def _record_arguments(context: ReleaseContext, record: AuditRecord) -> tuple[Any, ...]:
    """``$1..$15`` of ``audit_release_if_current``: the context, then the record."""
    if record.key_name != context.name:  # the record's key_name column is context.name
        raise InternalError(f"audit record for key {record.key_name} checked against another")
    return (
        *context.arguments(),
        record.at,
        record.kind,
        record.decision,
        record.request_id,
        record.text(),
    )


async def consume_nonce_and_append_if_current(
    conn: asyncpg.Connection,
    context: ReleaseContext,
    record: AuditRecord,
    *,
    nonce: bytes,
    tee: str,
    expires_at: datetime,
    take: LimitTake | None,
) -> tuple[bool, int | LimitRefused | None]:
    """If ``context`` is still the key's current release context, record ``nonce`` (issued
    for ``tee``, live until ``expires_at``) as consumed at ``record.at``, take the policy's
    release limits (``take``; None when it states none) and append ``record``, in one
    statement, committed before this returns. Whether the context was current, and the
    record's sequence number; :class:`LimitRefused` when a limit refused (nothing counted,
    nothing consumed, nothing appended); None when nothing was written otherwise (the
    context changed, or, the context being current, the nonce was consumed before: a
    replay)."""
    row = await conn.fetchrow(
        _CONSUME_AND_APPEND_IF_CURRENT,
        *_record_arguments(context, record),
        nonce,
        tee,
        expires_at,
        *(NO_LIMITS if take is None else take.arguments()),
    )
    if row is None:  # the statement always returns one row
        raise InternalError("the conditional consume returned no row")
    return bool(row["current"]), _taken(row)


def _taken(row: asyncpg.Record) -> int | LimitRefused | None:
    """What ``audit_release_append`` came to: the record's sequence number, the limit that
    refused, or None when it did not run."""
    if row["seq"] is not None:
        seq: int = row["seq"]
        return seq
    rule: str | None = row["refused"]
    if rule is None:
        return None
    found: str = row["found"]
    return LimitRefused(
        rule, found if rule == "pin_to_first_instance" else int(found), row["retry_at"]
    )
