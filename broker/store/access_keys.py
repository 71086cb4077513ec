"""KMS access keys (``kms_access_keys``) and the SigV4 signatures already accepted.

An access key is an id (``KB`` and 18 base32 characters, shaped like AWS's ``AKIA...``) and a
40-character secret shown once at creation. SigV4 is an HMAC keyed by the secret, so the broker
keeps it sealed under the token's KEK (``hsm/custody.py``), never in clear; ids and names are
never reused (rows are never deleted).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final

import asyncpg

from broker.store.challenges import PURGE_GRACE
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso
from hsm.custody import WrappedSecret

_INSERT: Final = query("insert_kms_access_key")
_GET: Final = query("kms_access_key")
_LIST: Final = query("list_kms_access_keys")
_REVOKE: Final = query("revoke_kms_access_key")
_CONSUME: Final = query("consume_kms_signature")
_PURGE: Final = query("purge_kms_signatures")

ID_PREFIX = "KB"
SECRET_CHARACTERS = 40


def new_id() -> str:
    """``KB`` and 18 random base32 characters (90 bits)."""
    return ID_PREFIX + base64.b32encode(secrets.token_bytes(15)).decode("ascii")[:18]


def new_secret() -> str:
    """40 URL-safe characters (240 bits), as long as an AWS secret access key."""
    return secrets.token_urlsafe(30)


@dataclass(frozen=True, slots=True)
class StoredAccessKey:
    id: str
    name: str
    sealed: WrappedSecret
    revoked: bool

    def __repr__(self) -> str:
        return f"StoredAccessKey(id={self.id}, name={self.name}, revoked={self.revoked})"


class Acceptance(Enum):
    """What the database said of a verified signature."""

    ACCEPTED = "accepted"
    KEY_REVOKED = "key-revoked"
    REPLAYED = "replayed"


async def insert(
    conn: asyncpg.Connection, access_key_id: str, name: str, sealed: WrappedSecret, created_by: str
) -> None:
    """Store a new access key, in the caller's transaction (which checked its KEK)."""
    await conn.execute(
        _INSERT,
        access_key_id,
        name,
        sealed.kek_label,
        sealed.blob,
        sealed.secret_length,
        created_by,
    )


async def get(db: Database, access_key_id: str) -> StoredAccessKey | None:
    row = await db.fetchrow(_GET, access_key_id)
    if row is None:
        return None
    sealed = WrappedSecret(bytes(row["wrapped_secret"]), row["secret_length"], row["kek_label"])
    return StoredAccessKey(row["id"], row["name"], sealed, row["revoked_at"] is not None)


async def list_keys(db: Database) -> list[dict[str, Any]]:
    return [
        {
            "access_key_id": row["id"],
            "name": row["name"],
            "created_at": iso(row["created_at"]),
            "created_by": row["created_by"],
            "revoked_at": iso(row["revoked_at"]),
            "revoked_by": row["revoked_by"],
        }
        for row in await db.fetch(_LIST)
    ]


async def revoke(db: Database, access_key_id: str, revoked_by: str) -> bool:
    return bool(await db.fetch(_REVOKE, access_key_id, revoked_by))


async def consume_signature(
    db: Database, access_key_id: str, signature: bytes, expires_at: datetime
) -> Acceptance:
    """Record ``signature`` as used, if its access key is still live and it was not used
    before: one statement, committed before this returns."""
    row = await db.fetchrow(_CONSUME, access_key_id, signature, expires_at)
    if row is None or not row["live"]:
        return Acceptance.KEY_REVOKED
    return Acceptance.ACCEPTED if row["fresh"] else Acceptance.REPLAYED


async def purge_signatures(db: Database, now: datetime) -> int:
    """Delete signatures whose window closed more than the challenges' grace before ``now``
    (the same margin for clock differences between replicas); the count."""
    status: str = await db.execute(_PURGE, now - PURGE_GRACE)
    return int(status.rsplit(" ", 1)[-1])
