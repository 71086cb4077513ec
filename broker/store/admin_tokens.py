"""Admin bearer tokens: ``kbadm_<id>_<secret>``, stored as SHA-256 of the secret part.

The id lets the broker find the row without scanning; the secret is 32 random bytes (hex), shown
once at creation, compared in constant time against its stored hash, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from broker.errors import TokenInvalid
from broker.redact import Secret
from broker.roles import Principal, Role
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso

_INSERT: Final = query("insert_admin_token")
_GET: Final = query("admin_token")
_LIST: Final = query("list_admin_tokens")
_REVOKE: Final = query("revoke_admin_token")

PREFIX = "kbadm"


# fullmatch, never match with "$": that would also accept a trailing newline.
_ID = re.compile(r"[0-9a-f]{16}")
_SECRET = re.compile(r"[0-9a-f]{64}")


def is_token_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


async def create(db: Database, name: str, role: Role, created_by: str) -> tuple[str, Secret]:
    token_id = secrets.token_hex(8)
    secret = secrets.token_hex(32)
    await db.execute(_INSERT, token_id, name, role.value, _hash(secret), created_by)
    return token_id, Secret(f"{PREFIX}_{token_id}_{secret}")


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
    return Principal(actor=f"token:{token_id}:{row['name']}", role=Role(row["role"]))


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
            "revoked_at": iso(r["revoked_at"]),
        }
        for r in rows
    ]
