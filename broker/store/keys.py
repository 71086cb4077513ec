"""Keys, policies and key-policy bindings in PostgreSQL (no HSM work here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from broker.errors import Conflict, KeyNotFound, NotFound
from broker.store.database import Database
from hsm.custody import WrappedSecret


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    version: int
    kek_label: str
    secret_length: int
    state: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kek_label": self.kek_label,
            "secret_length": self.secret_length,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _key_info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        row["name"],
        row["version"],
        row["kek_label"],
        row["secret_length"],
        row["state"],
        row["created_at"],
        row["updated_at"],
    )


async def insert_key_version(
    conn: asyncpg.Connection, q: dict[str, str], name: str, wrapped: WrappedSecret
) -> KeyInfo:
    """Store ``wrapped`` as the next version of ``name`` (1 for a new key)."""
    version = await conn.fetchval(q["next_key_version"], name)
    try:
        row = await conn.fetchrow(
            q["insert_key"], name, version, wrapped.kek_label, wrapped.blob, wrapped.secret_length
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"key {name} version {version} was created concurrently") from None
    except asyncpg.CheckViolationError:
        raise Conflict(f"key name {name!r} is not allowed (lowercase, digits, . _ -)") from None
    return _key_info(row)


async def list_keys(db: Database) -> list[KeyInfo]:
    return [_key_info(row) for row in await db.fetch("list_keys")]


async def latest_key(db: Database, name: str) -> KeyInfo:
    row = await db.fetchrow("latest_key", name)
    if row is None:
        raise KeyNotFound(f"no key named {name}")
    return _key_info(row)


async def set_state(db: Database, name: str, state: str) -> None:
    if not await db.fetch("set_key_state", name, state):
        raise KeyNotFound(f"no key named {name}")


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    name: str
    version: int
    document: str
    digest: str
    created_at: datetime
    created_by: str

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


def _policy(row: asyncpg.Record) -> PolicyRecord:
    return PolicyRecord(
        row["name"],
        row["version"],
        row["document"],
        row["digest"],
        row["created_at"],
        row["created_by"],
    )


async def insert_policy_version(
    db: Database, *, name: str, version: int, document: str, digest: str, actor: str
) -> PolicyRecord:
    """Publish ``version`` of policy ``name``; versions only grow and never change.

    Publishing the identical document again is a no-op that returns the stored version.
    """
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('policy:' || $1))", name)
        latest = await conn.fetchrow(db.q["latest_policy"], name)
        if latest is not None:
            if latest["version"] == version and latest["digest"] == digest:
                return _policy(latest)
            if version <= latest["version"]:
                raise Conflict(
                    f"policy {name} version {latest['version']} is published; a new document "
                    f"needs a higher version than {latest['version']} (found {version})"
                )
        try:
            await conn.execute(db.q["insert_policy"], name, version, document, digest, actor)
        except asyncpg.CheckViolationError:
            raise Conflict(
                f"policy name {name!r} is not allowed (lowercase, digits, . _ -)"
            ) from None
        row = await conn.fetchrow(db.q["policy_version"], name, version)
    return _policy(row)


async def get_policy(db: Database, name: str, version: int | None = None) -> PolicyRecord:
    row = (
        await db.fetchrow("latest_policy", name)
        if version is None
        else await db.fetchrow("policy_version", name, version)
    )
    if row is None:
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"no policy named {name}{suffix}")
    return _policy(row)


async def list_policies(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetch("list_policies")
    return [
        {
            "name": r["name"],
            "version": r["version"],
            "digest": r["digest"],
            "created_at": r["created_at"].isoformat(),
            "created_by": r["created_by"],
        }
        for r in rows
    ]


async def bind_policy(
    db: Database, *, key_name: str, policy_name: str, version: int | None, lock: bool, actor: str
) -> dict[str, Any]:
    """Bind ``key_name`` to a policy; refused when the current binding is locked."""
    async with db.transaction() as conn:
        if await conn.fetchrow(db.q["latest_key"], key_name) is None:
            raise KeyNotFound(f"no key named {key_name}")
        policy = (
            await conn.fetchrow(db.q["latest_policy"], policy_name)
            if version is None
            else await conn.fetchrow(db.q["policy_version"], policy_name, version)
        )
        if policy is None:
            raise NotFound(f"no policy named {policy_name}")
        current = await conn.fetchrow(db.q["key_binding_for_update"], key_name)
        if current is not None and current["locked"]:
            raise Conflict(
                f"key {key_name} is locked to policy {current['policy_name']} "
                f"version {current['policy_version']}; its binding cannot change"
            )
        # Locking pins the version in force now, so a later publication cannot loosen it.
        pinned = policy["version"] if lock else version
        await conn.execute(db.q["upsert_key_binding"], key_name, policy_name, pinned, lock, actor)
    return {
        "key": key_name,
        "policy": policy_name,
        "policy_version": pinned,
        "locked": lock,
    }
