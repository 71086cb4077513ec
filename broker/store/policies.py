"""Published release policies in PostgreSQL: immutable versions, each with its digest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from broker.errors import Conflict, NotFound
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso

_LOCK_NAME: Final = query("lock_policy_name")
_INSERT: Final = query("insert_policy")
_VERSION: Final = query("policy_version")
_LATEST: Final = query("latest_policy")
_LIST: Final = query("list_policies")
_VERSIONS: Final = query("policy_versions")


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
            "created_at": iso(self.created_at),
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


async def publish(
    db: Database, *, name: str, version: int, document: str, digest: str, actor: str
) -> PolicyRecord:
    """Publish ``version`` of policy ``name``; versions only grow and never change.

    Publishing the identical document again is a no-op that returns the stored version.
    """
    async with db.transaction() as conn:
        await conn.execute(_LOCK_NAME, name)
        latest = await conn.fetchrow(_LATEST, name)
        if latest is not None:
            if latest["version"] == version and latest["digest"] == digest:
                return _policy(latest)
            if version <= latest["version"]:
                raise Conflict(
                    f"policy {name} version {latest['version']} is published; a new document "
                    f"needs a higher version than {latest['version']} (found {version})"
                )
        try:
            await conn.execute(_INSERT, name, version, document, digest, actor)
        except asyncpg.CheckViolationError:
            raise Conflict(
                f"policy name {name!r} is not allowed (lowercase, digits, . _ -)"
            ) from None
        row = await conn.fetchrow(_VERSION, name, version)
    return _policy(row)


async def version(db: Database, name: str, version: int) -> PolicyRecord | None:
    """Version ``version`` of policy ``name``; None when it was never published."""
    row = await db.fetchrow(_VERSION, name, version)
    return None if row is None else _policy(row)


async def get(db: Database, name: str, version: int | None = None) -> PolicyRecord:
    """Version ``version`` of policy ``name``, or its latest when None; NotFound if none."""
    row = await _find(db, name, version)
    if row is None:
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"no policy named {name}{suffix}")
    return _policy(row)


async def in_force(conn: asyncpg.Connection, name: str, version: int | None) -> int | None:
    """Inside the caller's transaction: the version of policy ``name`` that a binding to
    ``version`` (None: the latest) would apply now; None when there is no such policy."""
    row = await _find(conn, name, version)
    return None if row is None else int(row["version"])


async def _find(
    source: Database | asyncpg.Connection, name: str, version: int | None
) -> asyncpg.Record | None:
    if version is None:
        return await source.fetchrow(_LATEST, name)
    return await source.fetchrow(_VERSION, name, version)


def _listed(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "name": r["name"],
        "version": r["version"],
        "digest": r["digest"],
        "created_at": iso(r["created_at"]),
        "created_by": r["created_by"],
    }


async def list_latest(db: Database) -> list[dict[str, Any]]:
    """The latest version of every policy, by name."""
    return [_listed(r) for r in await db.fetch(_LIST)]


async def versions(db: Database, name: str) -> list[dict[str, Any]]:
    """Every published version of policy ``name``, oldest first (empty when none)."""
    return [_listed(r) for r in await db.fetch(_VERSIONS, name)]
