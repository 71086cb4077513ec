"""Key-policy bindings in PostgreSQL: which policy decides a key's releases."""

from __future__ import annotations

from typing import Any, Final

from broker.errors import Conflict, NotFound
from broker.store import keys, policies
from broker.store.database import Database
from broker.store.sqlfiles import query

_GET: Final = query("key_binding")
_GET_FOR_UPDATE: Final = query("key_binding_for_update")
_UPSERT: Final = query("upsert_key_binding")


async def is_bound(db: Database, key_name: str) -> bool:
    """Whether ``key_name`` has a policy bound."""
    return await db.fetchrow(_GET, key_name) is not None


async def bind(
    db: Database, *, key_name: str, policy_name: str, version: int | None, lock: bool, actor: str
) -> dict[str, Any]:
    """Bind ``key_name`` to a policy; refused when the current binding is locked."""
    async with db.transaction() as conn:
        await keys.lock_changeable(conn, key_name)
        in_force = await policies.in_force(conn, policy_name, version)
        if in_force is None:
            raise NotFound(f"no policy named {policy_name}")
        current = await conn.fetchrow(_GET_FOR_UPDATE, key_name)
        if current is not None and current["locked"]:
            raise Conflict(
                f"key {key_name} is locked to policy {current['policy_name']} "
                f"version {current['policy_version']}; its binding cannot change"
            )
        # Locking pins the version in force now, so a later publication cannot loosen it.
        pinned = in_force if lock else version
        await conn.execute(_UPSERT, key_name, policy_name, pinned, lock, actor)
    return {
        "key": key_name,
        "policy": policy_name,
        "policy_version": pinned,
        "locked": lock,
    }
