"""The KEKs as the database sees them: the lock that serialises changes to the broker's
token objects across every process sharing the database (KEK rotation, re-wrap and
retirement, first-time provisioning and its repair), which KEK seals how many key versions
and KMS access keys, and the re-wrap's walk over them (no HSM work here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from broker.errors import InternalError
from broker.store.sqlfiles import query
from hsm.custody import WrappedSecret

_LOCK_TOKEN_OBJECTS: Final = query("lock_token_objects")
_LOCK_SHARED: Final = query("lock_kek_rotation_shared")
_USAGE: Final = query("kek_usage")
_TO_REWRAP: Final = query("key_versions_to_rewrap")
_STORE_REWRAPPED: Final = query("store_rewrapped")
_ACCESS_KEY_USAGE: Final = query("kek_access_key_usage")
_ACCESS_KEYS_TO_REWRAP: Final = query("access_keys_to_rewrap")
_STORE_REWRAPPED_ACCESS_KEYS: Final = query("store_rewrapped_access_keys")


def _in_transaction(conn: asyncpg.Connection) -> None:
    if not conn.is_in_transaction():  # a lock that ended with its statement guards nothing
        raise InternalError("the token objects lock was taken outside a transaction")


async def lock_token_objects(conn: asyncpg.Connection) -> None:
    """Wait for, then hold until the caller's transaction ends, the one lock on the token's
    objects: two processes creating them at once would each create the same label (the next
    KEK of two rotations; the first KEK, signing key and nonce key of two replicas starting
    together on a fresh token); a retirement must see every version sealed under its KEK;
    two re-wraps would re-seal the same versions twice."""
    _in_transaction(conn)
    await conn.execute(_LOCK_TOKEN_OBJECTS)


async def lock_rotation_shared(conn: asyncpg.Connection) -> None:
    """The token objects lock in shared mode, until the caller's transaction ends: what storing a
    new key version holds while it checks that its KEK is still on the token."""
    _in_transaction(conn)
    await conn.execute(_LOCK_SHARED)


async def usage(conn: asyncpg.Connection) -> dict[str, int]:
    """How many stored key versions each KEK label seals (labels sealing none are absent)."""
    return {row["kek_label"]: row["versions"] for row in await conn.fetch(_USAGE)}


async def to_rewrap(
    conn: asyncpg.Connection, target: str, after: tuple[str, int], limit: int
) -> list[tuple[str, int, WrappedSecret]]:
    """Up to ``limit`` versions not sealed under ``target``, after ``after`` (name, version)
    in primary-key order, each with its sealed secret."""
    rows = await conn.fetch(_TO_REWRAP, target, after[0], after[1], limit)
    return [
        (
            row["name"],
            row["version"],
            WrappedSecret(bytes(row["wrapped_blob"]), row["secret_length"], row["kek_label"]),
        )
        for row in rows
    ]


async def store_rewrapped(
    conn: asyncpg.Connection,
    versions: Sequence[tuple[str, int, WrappedSecret]],
    resealed: Sequence[WrappedSecret],
    target: str,
) -> int:
    """Replace each version's blob by its re-sealed one, where the version still holds the
    blob that was re-sealed; how many were replaced."""
    if len(versions) != len(resealed):
        raise InternalError("re-sealed blobs do not match the versions read")
    rows = await conn.fetch(
        _STORE_REWRAPPED,
        [name for name, _, _ in versions],
        [version for _, version, _ in versions],
        [old.blob for _, _, old in versions],
        [new.blob for new in resealed],
        target,
    )
    return len(rows)


async def access_key_usage(conn: asyncpg.Connection) -> dict[str, int]:
    """How many KMS access keys' secrets each KEK label seals (labels sealing none absent)."""
    return {row["kek_label"]: row["access_keys"] for row in await conn.fetch(_ACCESS_KEY_USAGE)}


async def access_keys_to_rewrap(
    conn: asyncpg.Connection, target: str
) -> list[tuple[str, WrappedSecret]]:
    """Every KMS access key whose secret is not sealed under ``target``, by id."""
    return [
        (
            row["id"],
            WrappedSecret(bytes(row["wrapped_secret"]), row["secret_length"], row["kek_label"]),
        )
        for row in await conn.fetch(_ACCESS_KEYS_TO_REWRAP, target)
    ]


async def store_rewrapped_access_keys(
    conn: asyncpg.Connection,
    found: Sequence[tuple[str, WrappedSecret]],
    resealed: Sequence[WrappedSecret],
    target: str,
) -> int:
    """Replace each access key's sealed secret by its re-sealed one, where the row still
    holds the one that was re-sealed; how many were replaced."""
    if len(found) != len(resealed):
        raise InternalError("re-sealed secrets do not match the access keys read")
    rows = await conn.fetch(
        _STORE_REWRAPPED_ACCESS_KEYS,
        [key_id for key_id, _ in found],
        [old.blob for _, old in found],
        [new.blob for new in resealed],
        target,
    )
    return len(rows)
