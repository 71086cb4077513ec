"""Admin bearer tokens: ``kbadm_<id>_<secret>``, stored as SHA-256 of the secret part.

The id lets the broker find the row without scanning; the secret is 32 random bytes (hex), shown
once at creation, compared in constant time against its stored hash, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from broker.errors import Conflict, NotFound, TokenInvalid
from broker.redact import Secret
from broker.roles import Principal, Role
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso, utcnow

_INSERT: Final = query("insert_admin_token")
_GET: Final = query("admin_token")
_LIST: Final = query("list_admin_tokens")
_REVOKE: Final = query("revoke_admin_token")
_FOR_ROTATION: Final = query("admin_token_for_rotation")
_REPLACE: Final = query("replace_admin_token")

PREFIX = "kbadm"


# fullmatch, never match with "$": that would also accept a trailing newline.
_ID = re.compile(r"[0-9a-f]{16}")
_SECRET = re.compile(r"[0-9a-f]{64}")


def is_token_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


#: How long a new token is valid unless its creator says otherwise, and at most.
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME_DAYS = 365


async def create(
    db: Database,
    name: str,
    role: Role,
    created_by: str,
    expires_at: datetime | None = None,
) -> tuple[str, Secret]:
    """A new token, valid until ``expires_at`` (by default :data:`DEFAULT_LIFETIME` from
    now); its id and the token, which is never stored."""
    expires_at = expires_at or utcnow() + DEFAULT_LIFETIME
    async with db.connection() as conn:
        return await _insert(conn, name, role, created_by, expires_at)


async def _insert(
    conn: asyncpg.Connection, name: str, role: Role, created_by: str, expires_at: datetime
) -> tuple[str, Secret]:
    token_id = secrets.token_hex(8)
    secret = secrets.token_hex(32)
    await conn.execute(_INSERT, token_id, name, role.value, _hash(secret), created_by, expires_at)
    return token_id, Secret(f"{PREFIX}_{token_id}_{secret}")


@dataclass(frozen=True, slots=True)
class Rotated:
    old_id: str
    new_id: str
    name: str
    role: Role
    token: Secret


async def rotate(db: Database, token_id: str, actor: str, expires_at: datetime) -> Rotated:
    """A new token with the name and role of ``token_id``, which is revoked in the same
    transaction (and names its replacement). :class:`NotFound` for no such token,
    :class:`Conflict` for a revoked one."""
    async with db.transaction() as conn:
        row = await conn.fetchrow(_FOR_ROTATION, token_id)
        if row is None:
            raise NotFound(f"no admin token {token_id}")
        if row["revoked_at"] is not None:
            raise Conflict(f"token {token_id} is revoked; create a new one instead")
        role = Role(row["role"])
        new_id, token = await _insert(conn, row["name"], role, actor, expires_at)
        await conn.execute(_REPLACE, token_id, new_id)
    return Rotated(token_id, new_id, row["name"], role, token)


async def authenticate(db: Database, presented: str) -> Principal:
    parts = presented.split("_")
    if (
        len(parts) != 3
        or parts[0] != PREFIX
        or not _ID.fullmatch(parts[1])
        or not _SECRET.fullmatch(parts[2])
    ):
        raise TokenInvalid("admin token is malformed")
    token_id, secret = parts[1], parts[2]
    row = await db.fetchrow(_GET, token_id)
    # Compare against a dummy hash when the id is unknown, so timing does not tell ids apart.
    stored = bytes(row["secret_hash"]) if row is not None else bytes(32)
    if not hmac.compare_digest(stored, _hash(secret)) or row is None:
        raise TokenInvalid("admin token is not valid")
    if row["revoked_at"] is not None:
        raise TokenInvalid("admin token was revoked")
    if row["expires_at"] <= utcnow():
        raise TokenInvalid("admin token expired; ask an admin to rotate it or create another")
    return Principal(
        actor=f"token:{token_id}:{row['name']}",
        role=Role(row["role"]),
        token_id=token_id,
        expires_at=row["expires_at"],
    )


async def role_of(db: Database, token_id: str) -> Role | None:
    """The role of token ``token_id``; None when there is no such token."""
    row = await db.fetchrow(_GET, token_id)
    return None if row is None else Role(row["role"])


async def revoke(db: Database, token_id: str) -> bool:
    return bool(await db.fetch(_REVOKE, token_id))


async def list_tokens(db: Database) -> list[dict[str, str | None]]:
    rows = await db.fetch(_LIST)
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "role": r["role"],
            "created_at": iso(r["created_at"]),
            "created_by": r["created_by"],
            "expires_at": iso(r["expires_at"]),
            "revoked_at": iso(r["revoked_at"]),
            "replaced_by": r["replaced_by"],
        }
        for r in rows
    ]
