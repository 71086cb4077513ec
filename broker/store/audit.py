"""The tamper-evident audit trail: append inside the caller's transaction, verify the chain.

Each record is canonical JSON (RFC 8785, ``broker/jcs.py``) and is chained by the database
function ``audit_append`` (``sql/migrations/0001_foundation.sql``):
``hash = SHA-256(prev_hash || seq as 8 bytes big-endian || record)``. A trigger refuses
UPDATE, DELETE and TRUNCATE; should someone bypass it (a superuser disabling triggers), the
chain check finds the first record whose content, link or position no longer fits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from broker.jcs import canonical_text
from broker.store.database import Database
from broker.store.sqlfiles import query
from broker.timeutil import iso

_APPEND: Final = query("audit_append")
_HEAD: Final = query("audit_head")
_RANGE: Final = query("audit_range")
_COUNTS: Final = query("audit_counts")
_HISTORY_START: Final = query("audit_history_start")
_HISTORY: Final = query("audit_history")
_SEARCH: Final = query("audit_search")
_SEARCH_NEWEST: Final = query("audit_search_newest")
_FIRST_SINCE: Final = query("audit_first_since")
_RECORD: Final = query("audit_record")
_ACTIVITY: Final = query("release_activity")
_ATTESTATION: Final = query("audit_attestation_of_token")
#: Most records one :func:`search` returns.
TAIL_LIMIT = 1000

GENESIS = bytes(32)
_BATCH = 5000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    kind: str
    """``attest``, ``release``, ``admin``..."""
    decision: str
    """``allow``, ``deny``, ``error``, or the admin action's outcome."""
    request_id: str | None = None
    key_name: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return canonical_text(
            {
                **self.body,
                "at": iso(self.at.astimezone(UTC)),
                "kind": self.kind,
                "decision": self.decision,
                "request_id": self.request_id,
                "key_name": self.key_name,
            }
        )


def chain_hash(prev_hash: bytes, seq: int, record: str) -> bytes:
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big") + record.encode("utf-8")).digest()


async def append(conn: asyncpg.Connection, record: AuditRecord) -> int:
    """Append ``record`` and return its sequence number.

    Inside the caller's transaction when there is one; else the statement is its own
    transaction, committed (durably, with ``synchronous_commit`` on) before this returns,
    and the chain head's row lock is held only while PostgreSQL commits.
    """
    seq: int = await conn.fetchval(
        _APPEND,
        record.at,
        record.kind,
        record.decision,
        record.request_id,
        record.key_name,
        record.text(),
    )
    return seq


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which records :func:`search` returns: every member None (or 0) selects all."""

    key: str | None = None
    decision: str | None = None
    """``allow``, ``deny``, ``error``, or ``ok`` for admin actions."""
    kind: str | None = None
    actor: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    """Written at or after."""
    until: datetime | None = None
    """Written before."""
    after: int = 0
    """Sequence numbers above this one."""
    before: int | None = None
    """Sequence numbers below this one."""


async def search(
    db: Database, selected: AuditQuery, limit: int, *, newest_first: bool = False
) -> list[dict[str, Any]]:
    """Up to ``limit`` (1..:data:`TAIL_LIMIT`) records ``selected`` picks, in sequence
    order (or newest first), each with its record parsed and its chain hash in hex."""
    rows = await db.fetch(
        _SEARCH_NEWEST if newest_first else _SEARCH,
        selected.after,
        selected.before,
        selected.key,
        selected.decision,
        selected.kind,
        selected.request_id,
        selected.actor,
        selected.since,
        selected.until,
        max(1, min(limit, TAIL_LIMIT)),
    )
    return [
        {
            "seq": r["seq"],
            "at": iso(r["at"]),
            "kind": r["kind"],
            "decision": r["decision"],
            "request_id": r["request_id"],
            "key_name": r["key_name"],
            "hash": bytes(r["hash"]).hex(),
            "record": json.loads(r["record"]),
        }
        for r in rows
    ]


async def record(db: Database, seq: int) -> dict[str, Any] | None:
    """Record ``seq``, its content parsed into ``record``; None when the log has none."""
    row = await db.fetchrow(_RECORD, seq)
    if row is None:
        return None
    return {
        "seq": row["seq"],
        "at": iso(row["at"]),
        "kind": row["kind"],
        "decision": row["decision"],
        "request_id": row["request_id"],
        "key_name": row["key_name"],
        "record": json.loads(row["record"]),
    }


async def attestation_of(
    db: Database, token_id: str, since: datetime, until: datetime
) -> tuple[int, dict[str, Any]] | None:
    """The sequence number and content of the allowed attest record, written in [``since``,
    ``until``], that issued ``token_id``; None when there is none."""
    row = await db.fetchrow(_ATTESTATION, token_id, since, until)
    return None if row is None else (row["seq"], json.loads(row["record"]))


@dataclass(frozen=True, slots=True)
class Activity:
    """Releases of one key in one time bucket with one decision and reason."""

    bucket: datetime
    key_name: str
    decision: str
    reason: str
    """Empty for a release; the problem type (and a policy's first failed rule) else."""
    releases: int


async def activity(
    db: Database, since: datetime, until: datetime, bucket: timedelta, key_name: str | None
) -> list[Activity]:
    """Release records written in [``since``, ``until``), counted per ``bucket`` (aligned to
    ``since``), key, decision and reason; of ``key_name`` only when given."""
    rows = await db.fetch(_ACTIVITY, since, until, bucket, key_name)
    return [
        Activity(r["bucket"], r["key_name"], r["decision"], r["reason"], r["releases"])
        for r in rows
    ]


async def counts(db: Database) -> dict[str, int]:
    """How many records the log holds, by kind (a full scan: for tests and benchmarks)."""
    return {row["kind"]: row["records"] for row in await db.fetch(_COUNTS)}


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as a replay reads it: the columns, and the hashed text."""

    seq: int
    at: datetime
    kind: str
    decision: str
    request_id: str | None
    key_name: str | None
    record: str


async def history(
    db: Database, since: datetime, key_name: str | None, batch: int = _BATCH
) -> AsyncIterator[list[Stored]]:
    """The attest records and the release records (of ``key_name``, or of every key)
    written since about ``since``, oldest first, ``batch`` at a time: each batch is one
    statement on a connection of its own, so a long replay holds no transaction and no
    connection between batches, and never more than one batch in memory."""
    start = await db.fetchval(_HISTORY_START, since)
    if start is None:
        return
    after: int = start
    while True:
        rows = await db.fetch(_HISTORY, after, key_name, batch)
        if not rows:
            return
        yield [
            Stored(
                r["seq"],
                r["at"],
                r["kind"],
                r["decision"],
                r["request_id"],
                r["key_name"],
                r["record"],
            )
            for r in rows
        ]
        after = rows[-1]["seq"] + 1


@dataclass(frozen=True, slots=True)
class ChainReport:
    records: int
    ok: bool
    first_bad_seq: int | None = None
    reason: str | None = None


async def verify_chain(db: Database, since: datetime | None = None) -> ChainReport:
    """Walk the log and report the first record that breaks the chain: the whole log, or
    with ``since`` the records from the first one written at or after it to the head. A
    range is checked from the link its first record names, which is taken on trust: only a
    walk of the whole log proves the records before it."""
    prev_hash, expected_seq = GENESIS, 1
    if since is not None:
        first = await db.fetchrow(_FIRST_SINCE, since)
        if first is None:  # nothing written since: nothing in the range to check
            return ChainReport(0, True)
        prev_hash, expected_seq = bytes(first["prev_hash"]), first["seq"]
    count = 0
    after = expected_seq - 1
    while True:
        rows = await db.fetch(_RANGE, after, _BATCH)
        if not rows:
            break
        for row in rows:
            problem = _check_row(row, expected_seq, prev_hash)
            if problem is not None:
                return ChainReport(count, False, row["seq"], problem)
            prev_hash, expected_seq, count = bytes(row["hash"]), expected_seq + 1, count + 1
        after = rows[-1]["seq"]
    head = await db.fetchrow(_HEAD)
    if head is None or head["seq"] != expected_seq - 1 or bytes(head["hash"]) != prev_hash:
        return ChainReport(
            count, False, expected_seq - 1, "the chain head does not match the last record"
        )
    return ChainReport(count, True)


def _check_row(row: Mapping[str, Any], expected_seq: int, prev_hash: bytes) -> str | None:
    seq = row["seq"]
    if seq != expected_seq:
        return f"record {expected_seq} is missing (found {seq} next)"
    if bytes(row["prev_hash"]) != prev_hash:
        return "prev_hash does not equal the previous record's hash"
    if chain_hash(prev_hash, seq, row["record"]) != bytes(row["hash"]):
        return "hash does not match the record's content"
    try:
        content = json.loads(row["record"])
    except json.JSONDecodeError:
        return "record is not JSON"
    for column in ("kind", "decision", "request_id", "key_name"):
        if content.get(column) != row[column]:
            return f"column {column} disagrees with the hashed record"
    if content.get("at") != iso(row["at"].astimezone(UTC)):
        return "column at disagrees with the hashed record"
    return None
