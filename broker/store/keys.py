"""Keys in PostgreSQL: each version's wrapped blob and metadata (no HSM work here).

A key's state is ``active``, ``disabled``, ``pending-deletion`` (scheduled for destruction:
refused as a disabled key is, and only the cancellation may change it) or ``destroyed``
(every sealed blob gone: crypto-shredding). Every change of state locks the key's rows
first (``lock_key_state``), so a deletion cannot cross an enable or a second deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from broker.errors import BadRequest, Conflict, KeyNotFound
from broker.names import KbsPath
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso
from hsm.custody import WrappedSecret

_NEXT_VERSION: Final = query("next_key_version")
_VERSION: Final = query("key_version")
_INSERT: Final = query("insert_key")
_LATEST: Final = query("latest_key")
_LIST: Final = query("list_keys")
_SET_STATE: Final = query("set_key_state")
_SET_EXPOSURE: Final = query("set_key_exposure")
_PATH_KEY: Final = query("kbs_path_key")
_DELETE_PATH: Final = query("delete_kbs_path")
_INSERT_PATH: Final = query("insert_kbs_path")
_VERSIONS: Final = query("key_versions")
_DELETION: Final = query("key_deletion")
_LOCK_STATE: Final = query("lock_key_state")
_INSERT_DELETION: Final = query("insert_key_deletion")
_CANCEL_DELETION: Final = query("cancel_key_deletion")
_DUE_DELETIONS: Final = query("due_key_deletions")
_ANY_DUE: Final = query("key_deletion_due")
_DESTROY_BLOBS: Final = query("destroy_key_blobs")
_MARK_DESTROYED: Final = query("mark_key_destroyed")

#: The states a custodian may move a key between; the other two belong to deletion.
SETTABLE_STATES = ("active", "disabled")
PENDING_DELETION = "pending-deletion"
DESTROYED = "destroyed"
#: The waiting period a scheduled deletion may have, in days, as AWS KMS allows: long
#: enough to notice a mistake or a malicious deletion, short enough to be a deletion.
MIN_DELETION_DAYS = 7
MAX_DELETION_DAYS = 30
_WRAPPED_BLOBS: Final = query("wrapped_blobs")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    version: int
    kek_label: str
    secret_length: int
    state: str
    exposure: str
    kbs_path: str | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    policy: str | None
    """The bound policy's name; None when no policy is bound (the key is never released)."""
    policy_version: int | None
    """The pinned policy version; None follows the newest."""
    locked: bool
    destroy_after: datetime | None
    """When a scheduled deletion destroys the key; None when none is scheduled."""

    def binding(self) -> dict[str, Any] | None:
        if self.policy is None:
            return None
        return {"policy": self.policy, "policy_version": self.policy_version, "locked": self.locked}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kek_label": self.kek_label,
            "secret_length": self.secret_length,
            "state": self.state,
            "exposure": self.exposure,
            "kbs_path": self.kbs_path,
            "binding": self.binding(),
            "destroy_after": iso(self.destroy_after),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
        }


def _key_info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        row["name"],
        row["version"],
        row["kek_label"],
        row["secret_length"],
        row["state"],
        row["exposure"],
        row["kbs_path"],
        row["created_at"],
        row["updated_at"],
        row["created_by"],
        row["updated_by"],
        row["policy_name"],
        row["policy_version"],
        row["locked"],
        row["destroy_after"],
    )


async def insert_key_version(
    conn: asyncpg.Connection, name: str, wrapped: WrappedSecret, actor: str
) -> KeyInfo:
    """Store ``wrapped`` as the next version of ``name`` (1 for a new key), made by
    ``actor``. :class:`Conflict` when the key is pending deletion or destroyed."""
    state = await conn.fetchval(_LOCK_STATE, name)
    if state is not None:
        refuse_unless_settable(name, state)
    version = await conn.fetchval(_NEXT_VERSION, name)
    try:
        row = await conn.fetchrow(
            _INSERT, name, version, wrapped.kek_label, wrapped.blob, wrapped.secret_length, actor
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"key {name} version {version} was created concurrently") from None
    except asyncpg.CheckViolationError:
        raise Conflict(f"key name {name!r} is not allowed (lowercase, digits, . _ -)") from None
    return _key_info(row)


def refuse_unless_settable(name: str, state: str) -> None:
    """:class:`Conflict` unless ``state`` is one a custodian may change (active, disabled)."""
    if state == PENDING_DELETION:
        raise Conflict(
            f"key {name} is pending deletion; cancel the deletion first "
            f"(`keybroker keys cancel-deletion {name}`)"
        )
    if state == DESTROYED:
        raise Conflict(f"key {name} was destroyed; nothing about it can change")


async def list_keys(db: Database) -> list[KeyInfo]:
    return [_key_info(row) for row in await db.fetch(_LIST)]


async def wrapped_version(db: Database, name: str, version: int) -> WrappedSecret | None:
    """The sealed secret of version ``version`` of ``name``; None when there is none."""
    row = await db.fetchrow(_VERSION, name, version)
    if row is None or row["wrapped_blob"] is None:  # none, or destroyed
        return None
    return WrappedSecret(bytes(row["wrapped_blob"]), row["secret_length"], row["kek_label"])


async def find_latest(db: Database, name: str) -> KeyInfo | None:
    """The newest version of ``name``; None when there is no such key."""
    row = await db.fetchrow(_LATEST, name)
    return None if row is None else _key_info(row)


async def latest_key(db: Database, name: str) -> KeyInfo:
    """The newest version of ``name``; :class:`KeyNotFound` when there is no such key."""
    info = await find_latest(db, name)
    if info is None:
        raise not_found(name)
    return info


def not_found(name: str) -> KeyNotFound:
    return KeyNotFound(f"no key named {name}")


async def lock_changeable(conn: asyncpg.Connection, name: str) -> str:
    """Lock the key's rows until the caller's transaction ends and return its state;
    :class:`KeyNotFound` when there is no such key, :class:`Conflict` when it is pending
    deletion or destroyed (nothing about it may change then)."""
    current: str | None = await conn.fetchval(_LOCK_STATE, name)
    if current is None:
        raise not_found(name)
    refuse_unless_settable(name, current)
    return current


async def set_state(db: Database, name: str, state: str, actor: str) -> None:
    """Make ``name`` active or disabled; :class:`Conflict` while it is pending deletion or
    once it is destroyed."""
    if state not in SETTABLE_STATES:
        raise BadRequest(f"state {state!r} is not one of {', '.join(SETTABLE_STATES)}")
    async with db.transaction() as conn:
        await lock_changeable(conn, name)
        await conn.execute(_SET_STATE, name, state, actor)


async def set_exposure(db: Database, name: str, exposure: str, actor: str) -> None:
    """Set where the secret of every version of ``name`` may be while it is released."""
    async with db.transaction() as conn:
        await lock_changeable(conn, name)
        await conn.execute(_SET_EXPOSURE, name, exposure, actor)


@dataclass(frozen=True, slots=True)
class KeyVersion:
    version: int
    kek_label: str
    secret_length: int
    state: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kek_label": self.kek_label,
            "secret_length": self.secret_length,
            "state": self.state,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
        }


async def versions(db: Database, name: str) -> list[KeyVersion]:
    """Every version of ``name``, oldest first (empty when there is no such key)."""
    return [KeyVersion(*row.values()) for row in await db.fetch(_VERSIONS, name)]


async def deletion(db: Database, name: str) -> dict[str, Any] | None:
    """The key's scheduled (or completed) deletion; None when none was scheduled."""
    row = await db.fetchrow(_DELETION, name)
    if row is None:
        return None
    return {
        "scheduled_at": iso(row["scheduled_at"]),
        "scheduled_by": row["scheduled_by"],
        "destroy_after": iso(row["destroy_after"]),
        "destroyed_at": iso(row["destroyed_at"]),
    }


def check_deletion_days(days: int) -> None:
    """:class:`BadRequest` unless a deletion waits ``days`` within 7..30."""
    if not MIN_DELETION_DAYS <= days <= MAX_DELETION_DAYS:
        raise BadRequest(
            f"a deletion waits {MIN_DELETION_DAYS} to {MAX_DELETION_DAYS} days, not {days}: "
            "time to notice a mistake before the key is destroyed for good"
        )


async def schedule_deletion(
    conn: asyncpg.Connection, name: str, now: datetime, days: int, actor: str
) -> datetime:
    """Make ``name`` pending deletion, to be destroyed ``days`` after ``now``, inside the
    caller's transaction; the time it will be destroyed."""
    check_deletion_days(days)
    current = await lock_changeable(conn, name)
    destroy_after = now + timedelta(days=days)
    await conn.execute(_INSERT_DELETION, name, current, now, actor, destroy_after)
    await conn.execute(_SET_STATE, name, PENDING_DELETION, actor)
    return destroy_after


async def cancel_deletion(conn: asyncpg.Connection, name: str, actor: str) -> str:
    """Cancel the pending deletion of ``name`` inside the caller's transaction and restore
    the state it had; that state. :class:`Conflict` when no deletion is pending."""
    current = await conn.fetchval(_LOCK_STATE, name)
    if current is None:
        raise not_found(name)
    if current != PENDING_DELETION:
        raise Conflict(f"key {name} is {current}, not pending deletion: nothing to cancel")
    prior: str | None = await conn.fetchval(_CANCEL_DELETION, name)
    if prior is None:  # the state says pending, the schedule is gone: never by our writes
        raise Conflict(f"key {name} is pending deletion without a schedule")
    await conn.execute(_SET_STATE, name, prior, actor)
    return prior


async def deletion_due(db: Database, now: datetime) -> bool:
    """Whether any key's deletion is due at ``now`` (one statement, no transaction)."""
    return bool(await db.fetchval(_ANY_DUE, now))


async def due_deletions(conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
    """Keys whose deletion is due at ``now``, locked in the caller's transaction (rows
    another transaction holds are skipped: that one is destroying them)."""
    return [row["key_name"] for row in await conn.fetch(_DUE_DELETIONS, now, limit)]


async def destroy(
    conn: asyncpg.Connection, name: str, now: datetime, actor: str
) -> list[dict[str, Any]]:
    """Destroy every sealed blob of ``name`` and free its KBS path, inside the caller's
    transaction; the versions destroyed, each with the KEK it was sealed under."""
    rows = await conn.fetch(_DESTROY_BLOBS, name, actor)
    await conn.execute(_MARK_DESTROYED, name, now)
    await conn.execute(_DELETE_PATH, name)
    return [{"version": r["version"], "kek_label": r["kek_label"]} for r in rows]


async def key_at_path(db: Database, path: KbsPath) -> str | None:
    """The name of the key that answers at ``path``; None when no key does."""
    row = await db.fetchrow(_PATH_KEY, path.repository, path.type, path.tag)
    return None if row is None else str(row["key_name"])


async def set_kbs_path(db: Database, name: str, path: KbsPath | None, actor: str) -> bool:
    """Make ``name`` answer at ``path`` (in place of any path it had), or at none. Whether
    the key had a path before. :class:`Conflict` when another key answers at ``path``."""
    async with db.transaction() as conn:
        await lock_changeable(conn, name)
        if path is not None:
            holder = await conn.fetchrow(_PATH_KEY, path.repository, path.type, path.tag)
            if holder is not None and holder["key_name"] != name:
                raise Conflict(
                    f"KBS path {path} is key {holder['key_name']}'s; clear it there first"
                )
        had = await conn.fetchrow(_DELETE_PATH, name) is not None
        if path is not None:
            try:
                await conn.execute(_INSERT_PATH, path.repository, path.type, path.tag, name, actor)
            except asyncpg.UniqueViolationError:  # another key took it meanwhile
                raise Conflict(f"KBS path {path} was given to another key concurrently") from None
    return had


async def wrapped_blobs(conn: asyncpg.Connection) -> dict[str, list[bytes]]:
    """Every key version's wrapped blob, by the KEK label it is wrapped under."""
    blobs: dict[str, list[bytes]] = {}
    for row in await conn.fetch(_WRAPPED_BLOBS):
        blobs.setdefault(row["kek_label"], []).append(bytes(row["wrapped_blob"]))
    return blobs
