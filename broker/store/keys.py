"""Keys in PostgreSQL: each version's wrapped blob and metadata (no HSM work here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from broker.errors import Conflict, KeyNotFound
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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kek_label": self.kek_label,
            "secret_length": self.secret_length,
            "state": self.state,
            "exposure": self.exposure,
            "kbs_path": self.kbs_path,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
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
    )


async def insert_key_version(
    conn: asyncpg.Connection, name: str, wrapped: WrappedSecret
) -> KeyInfo:
    """Store ``wrapped`` as the next version of ``name`` (1 for a new key)."""
    version = await conn.fetchval(_NEXT_VERSION, name)
    try:
        row = await conn.fetchrow(
            _INSERT, name, version, wrapped.kek_label, wrapped.blob, wrapped.secret_length
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"key {name} version {version} was created concurrently") from None
    except asyncpg.CheckViolationError:
        raise Conflict(f"key name {name!r} is not allowed (lowercase, digits, . _ -)") from None
    return _key_info(row)


async def exists(conn: asyncpg.Connection, name: str) -> bool:
    """Whether a key ``name`` exists, inside the caller's transaction."""
    return await conn.fetchrow(_LATEST, name) is not None


async def list_keys(db: Database) -> list[KeyInfo]:
    return [_key_info(row) for row in await db.fetch(_LIST)]


async def wrapped_version(db: Database, name: str, version: int) -> WrappedSecret | None:
    """The sealed secret of version ``version`` of ``name``; None when there is none."""
    row = await db.fetchrow(_VERSION, name, version)
    if row is None:
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


async def set_state(db: Database, name: str, state: str) -> None:
    if not await db.fetch(_SET_STATE, name, state):
        raise not_found(name)


async def set_exposure(db: Database, name: str, exposure: str) -> None:
    """Set where the secret of every version of ``name`` may be while it is released."""
    if not await db.fetch(_SET_EXPOSURE, name, exposure):
        raise not_found(name)


async def key_at_path(db: Database, path: KbsPath) -> str | None:
    """The name of the key that answers at ``path``; None when no key does."""
    row = await db.fetchrow(_PATH_KEY, path.repository, path.type, path.tag)
    return None if row is None else str(row["key_name"])


async def set_kbs_path(db: Database, name: str, path: KbsPath | None, actor: str) -> bool:
    """Make ``name`` answer at ``path`` (in place of any path it had), or at none. Whether
    the key had a path before. :class:`Conflict` when another key answers at ``path``."""
    async with db.transaction() as conn:
        if not await exists(conn, name):
            raise not_found(name)
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
