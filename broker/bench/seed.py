"""Seeding the benchmark's databases: through the admin API, then in bulk for the scale run.

The first key and its policy go through the admin API exactly as an operator's would (key
custodian imports the secret, policy author publishes the policy and binds it). The scale
run then needs 100,000 keys and 1,000,000 audit records, which the API would take an hour
to make; they are bulk-loaded with ``COPY``:

* keys ``<prefix>000001``.. each hold their own secret (:func:`key_secret`, derived from the
  benchmark secret so the generator can check any of them), wrapped by the HSM under the
  current KEK: rows, index entries, policy bindings and blobs are all distinct, so releases
  of random keys miss the broker's secret cache as a large key set would (RFC 5649 key wrap
  is deterministic: one secret under many names would be one blob, one cache entry);
* audit records are copies of real ``attest`` and ``release`` records of this broker, with
  ``at`` and the released key's name rewritten (same length, so the text stays RFC 8785
  canonical), chained exactly as ``audit_append`` chains them, from the current head, in
  one transaction that holds the head's row lock. ``keybroker admin audit verify`` (or
  ``GET /v1/admin/audit/verify``) therefore verifies the preloaded log like any other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from broker.privatefiles import read_secret, write_private
from broker.roles import Role
from broker.store import admin_tokens
from broker.store.audit import chain_hash
from broker.store.database import Database
from broker.store.keys import find_latest
from broker.timeutil import iso
from hsm.custody import WrappedSecret

SECRET_LENGTH = 32
#: The columns of ``audit_log`` a bulk load writes, in the order of its rows.
AUDIT_COLUMNS = [
    "seq",
    "at",
    "kind",
    "decision",
    "request_id",
    "key_name",
    "record",
    "prev_hash",
    "hash",
]
KEY_PREFIX = "bench-"
POLICY_NAME = "bench-snp-disk-key"


def key_name(index: int) -> str:
    return f"{KEY_PREFIX}{index:06d}"


def key_secret(bench_secret: bytes, index: int) -> bytes:
    """The secret of key ``index``: the benchmark secret for the first key (imported through
    the admin API), an HMAC of the key's name under it for the others."""
    if index == 0:
        return bench_secret
    return hmac.new(bench_secret, key_name(index).encode(), hashlib.sha256).digest()


def key_index(name: str) -> int:
    return int(name.removeprefix(KEY_PREFIX))


def bench_secret(path: Path) -> bytes:
    """The secret every benchmark key holds, kept (0600) so reused databases still match."""
    if not path.exists():
        write_private(path, secrets.token_hex(SECRET_LENGTH) + "\n")
    return bytes.fromhex(read_secret(path).reveal())


async def seed(dsn: str, base: str, secret: bytes, policy: dict[str, Any]) -> None:
    """The first key and its policy through the admin API, unless they exist."""
    db = await Database.connect(dsn, 1, 2)
    try:
        if await find_latest(db, key_name(0)) is not None:
            return
        tokens = {}
        for role in (Role.KEY_CUSTODIAN, Role.POLICY_AUTHOR):
            _, token = await admin_tokens.create(db, f"bench-{role.value}", role, "bench")
            tokens[role] = token.reveal()
    finally:
        await db.close()
    import base64  # noqa: PLC0415

    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        custodian = {"Authorization": f"Bearer {tokens[Role.KEY_CUSTODIAN]}"}
        author = {"Authorization": f"Bearer {tokens[Role.POLICY_AUTHOR]}"}
        answers = [
            await http.post(
                "/v1/admin/keys",
                json={"name": key_name(0), "secret": base64.b64encode(secret).decode()},
                headers=custodian,
            ),
            await http.post("/v1/admin/policies", json={"document": policy}, headers=author),
            await http.put(
                f"/v1/admin/keys/{key_name(0)}/policy",
                json={"policy": policy["name"]},
                headers=author,
            ),
        ]
    for answer in answers:
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"seeding failed: {answer.status_code} {answer.text}")


@dataclass(frozen=True)
class Scale:
    keys: int
    audit_records: int


async def scale_loaded(dsn: str, scale: Scale) -> tuple[bool, bool]:
    """Whether the keys (each with its own blob) and the audit records are already there."""
    conn = await asyncpg.connect(dsn)
    try:
        keys = await conn.fetchval("SELECT count(DISTINCT wrapped_blob) FROM keys")
        head = await conn.fetchval("SELECT seq FROM audit_head WHERE id")
    finally:
        await conn.close()
    return keys >= scale.keys, head >= scale.audit_records


async def preload_keys(
    dsn: str, count: int, bench: bytes, seal: Callable[[bytes], WrappedSecret]
) -> int:
    """Keys 1.. up to ``count``, each its own secret sealed by ``seal`` (the HSM), bound to
    key 0's policy; returns how many were added. Keys left by an older benchmark that share
    key 0's blob are made again."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            first = await conn.fetchrow(
                "SELECT kek_label, wrapped_blob, secret_length FROM keys WHERE name = $1",
                key_name(0),
            )
            binding = await conn.fetchrow(
                "SELECT policy_name, policy_version FROM key_bindings WHERE key_name = $1",
                key_name(0),
            )
            if first is None or binding is None:
                raise RuntimeError("seed the first key and its policy before preloading")
            shared = [
                r["name"]
                for r in await conn.fetch(
                    "SELECT name FROM keys WHERE wrapped_blob = $1 AND name <> $2",
                    first["wrapped_blob"],
                    key_name(0),
                )
            ]
            await conn.execute("DELETE FROM key_bindings WHERE key_name = ANY($1)", shared)
            await conn.execute("DELETE FROM keys WHERE name = ANY($1)", shared)
            have = {r["name"] for r in await conn.fetch("SELECT name FROM keys")}
            names = [key_name(i) for i in range(count) if key_name(i) not in have]
            records = []
            for name in names:
                wrapped = seal(key_secret(bench, key_index(name)))
                records.append((name, 1, wrapped.kek_label, wrapped.blob, wrapped.secret_length))
            await conn.copy_records_to_table(
                "keys",
                columns=["name", "version", "kek_label", "wrapped_blob", "secret_length"],
                records=records,
            )
            await conn.copy_records_to_table(
                "key_bindings",
                columns=["key_name", "policy_name", "policy_version", "updated_by"],
                records=(
                    (n, binding["policy_name"], binding["policy_version"], "bench-preload")
                    for n in names
                ),
            )
    finally:
        await conn.close()
    return len(names)


async def preload_audit(dsn: str, count: int, key_count: int) -> int:
    """Append ``count`` copies of real allowed records, chained; returns the head. The
    copies are of the newest allowed record of each kind there is: a release of the
    one-request flow (one record for both steps), or the token flow's attest and release."""
    conn = await asyncpg.connect(dsn)
    try:
        templates = await conn.fetch(
            "SELECT DISTINCT ON (kind) kind, decision, key_name, record, at FROM audit_log "
            "WHERE kind IN ('attest', 'release') AND decision = 'allow' ORDER BY kind, seq DESC"
        )
        if not templates:
            raise RuntimeError("run a few releases before preloading the audit log")
        async with conn.transaction():
            head = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id FOR UPDATE")
            rows = _chained_rows(head["seq"], bytes(head["hash"]), templates, count, key_count)
            await conn.copy_records_to_table(
                "audit_log",
                columns=AUDIT_COLUMNS,
                records=rows,
            )
            last_seq, last_hash = rows.last
            await conn.execute(
                "UPDATE audit_head SET seq = $1, hash = $2 WHERE id", last_seq, last_hash
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return last_seq


class _Rows:
    """The generated rows, chained from ``(seq, hash)``; remembers the last link."""

    def __init__(
        self, seq: int, prev: bytes, templates: list[asyncpg.Record], count: int, key_count: int
    ) -> None:
        self.seq, self.prev = seq, prev
        self.templates = [dict(t) for t in templates]
        self.count = count
        self.key_count = key_count
        self.last = (seq, prev)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        start = datetime.now(UTC) - timedelta(days=30)
        step = timedelta(days=30) / max(1, self.count)
        seq, prev = self.seq, self.prev
        for index in range(self.count):
            template = self.templates[index % len(self.templates)]
            at = start + step * index
            old_at = iso(template["at"].astimezone(UTC))
            record: str = template["record"].replace(f'"at":"{old_at}"', f'"at":"{iso(at)}"', 1)
            name = template["key_name"]
            if name is not None:
                name = key_name(index % self.key_count)
                record = record.replace(template["key_name"], name)
            request_id = _request_id_in(record)
            if request_id is not None:
                fresh = secrets.token_hex(8)
                record = record.replace(f'"request_id":"{request_id}"', f'"request_id":"{fresh}"')
                request_id = fresh
            seq += 1
            digest = chain_hash(prev, seq, record)
            yield (seq, at, template["kind"], "allow", request_id, name, record, prev, digest)
            prev = digest
            self.last = (seq, prev)


def _request_id_in(record: str) -> str | None:
    marker = '"request_id":"'
    start = record.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = record.find('"', start)
    return record[start:end]


def _chained_rows(
    seq: int, prev: bytes, templates: list[asyncpg.Record], count: int, key_count: int
) -> _Rows:
    return _Rows(seq, prev, templates, count, key_count)
