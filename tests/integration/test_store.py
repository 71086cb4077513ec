"""Schema, migrations and the audit chain against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest

from broker.admin.service import AdminService
from broker.errors import ConfigurationError, InternalError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.schema_dump import dump_schema
from broker.names import KbsPath
from broker.roles import Principal, Role
from broker.runtime import Runtime
from broker.store import audit, challenges, contexts
from broker.store.audit import AuditRecord, verify_chain
from broker.store.contexts import BoundPolicy, ReleaseContext
from broker.store.database import Database
from broker.store.migrate import migrate
from broker.store.release import PostgresReleaseStore, ReleaseStore
from broker.store.sqlfiles import MIGRATIONS, QUERIES, schema_sql
from tests.fakes.release_store import MemoryReleaseStore
from tests.integration.conftest import create_database

pytestmark = pytest.mark.integration


async def _fresh(cluster: LocalPostgres) -> tuple[Database, str]:
    dsn = await create_database(cluster)
    database = await Database.connect(dsn, 1, 2)
    return database, dsn


async def test_migrations_produce_the_reviewed_schema(cluster: LocalPostgres) -> None:
    database, dsn = await _fresh(cluster)
    try:
        async with database.connection() as conn:
            applied = await migrate(conn)
            assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
            assert await migrate(conn) == []  # idempotent
        name = dsn.split("/")[-1].split("?")[0]
        assert dump_schema(cluster, name) == schema_sql()
    finally:
        await database.close()


async def test_edited_migration_is_refused(cluster: LocalPostgres) -> None:
    database, _ = await _fresh(cluster)
    try:
        async with database.connection() as conn:
            await migrate(conn)
            await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
            with pytest.raises(ConfigurationError, match="0001_foundation changed after"):
                await migrate(conn)
    finally:
        await database.close()


async def test_every_named_query_prepares(db: Database) -> None:
    async with db.connection() as conn:
        for name, sql in QUERIES.items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:  # pragma: no cover - the message names it
                pytest.fail(f"query {name} does not prepare: {exc}")


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        at=datetime(2026, 1, 1, 12, 0, n, tzinfo=UTC),
        kind="release",
        decision="allow" if n % 2 else "deny",
        request_id=f"req-{n}",
        key_name="disk-key",
        body={"reasons": [f"clause {n}"], "n": n},
    )


async def _appended(cluster: LocalPostgres, count: int) -> Database:
    database, _ = await _fresh(cluster)
    async with database.connection() as conn:
        await migrate(conn)
    for n in range(count):
        async with database.transaction() as conn:
            await audit.append(conn, _record(n))
    return database


async def test_audit_chain_verifies(cluster: LocalPostgres) -> None:
    database = await _appended(cluster, 5)
    try:
        report = await verify_chain(database)
        assert report.ok, report
        assert report.records == 5
    finally:
        await database.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET decision = 'allow' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
    ],
)
async def test_audit_trigger_refuses_changes(cluster: LocalPostgres, statement: str) -> None:
    database = await _appended(cluster, 3)
    try:
        async with database.connection() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 3
    finally:
        await database.close()


async def _bypass_trigger(database: Database, statement: str, *args: object) -> None:
    """What an attacker with superuser rights could do: disable the trigger, change, re-enable."""
    async with database.transaction() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(statement, *args)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


@pytest.mark.parametrize(
    ("statement", "bad_seq", "reason"),
    [
        (
            "UPDATE audit_log SET record = replace(record, 'clause 2', 'clause X') WHERE seq = 3",
            3,
            "hash does not match",
        ),
        ("UPDATE audit_log SET decision = 'allow' WHERE seq = 3", 3, "column decision disagrees"),
        ("DELETE FROM audit_log WHERE seq = 3", 4, "record 3 is missing"),
        ("DELETE FROM audit_log WHERE seq = 5", 4, "chain head does not match"),
    ],
)
async def test_audit_chain_detects_tampering(
    cluster: LocalPostgres, statement: str, bad_seq: int, reason: str
) -> None:
    database = await _appended(cluster, 5)
    try:
        await _bypass_trigger(database, statement)
        report = await verify_chain(database)
        assert not report.ok
        assert report.first_bad_seq == bad_seq
        assert report.reason is not None
        assert reason in report.reason
    finally:
        await database.close()


async def test_recomputed_hash_still_breaks_the_next_link(cluster: LocalPostgres) -> None:
    # An attacker who edits a record and recomputes its hash breaks the next record's link.
    database = await _appended(cluster, 4)
    try:
        async with database.connection() as conn:
            row = await conn.fetchrow("SELECT prev_hash, record FROM audit_log WHERE seq = 2")
        forged = row["record"].replace("clause 1", "clause Z")
        new_hash = audit.chain_hash(bytes(row["prev_hash"]), 2, forged)
        await _bypass_trigger(
            database,
            "UPDATE audit_log SET record = $1, hash = $2 WHERE seq = 2",
            forged,
            new_hash,
        )
        report = await verify_chain(database)
        assert not report.ok
        assert report.first_bad_seq == 3
        assert report.reason == "prev_hash does not equal the previous record's hash"
    finally:
        await database.close()


async def _consume(
    database: Database, nonce: bytes, expires_at: datetime, at: datetime
) -> int | None:
    async with database.connection() as conn:
        return await challenges.consume_and_audit(
            conn,
            nonce,
            "snp",
            expires_at=expires_at,
            record=AuditRecord(at, "attest", "allow", "req", None, {"n": nonce.hex()}),
        )


async def test_a_nonce_is_consumed_once_with_its_audit_record(cluster: LocalPostgres) -> None:
    database = await _appended(cluster, 0)
    try:
        at = datetime(2026, 1, 1, 12, tzinfo=UTC)
        nonce, expires_at = bytes([1]) + bytes(31), at + timedelta(minutes=5)
        assert await _consume(database, nonce, expires_at, at) == 1
        # A second consumption writes nothing: no row, no audit record.
        assert await _consume(database, nonce, expires_at, at + timedelta(seconds=1)) is None
        async with database.connection() as conn:
            rows = await conn.fetch("SELECT nonce, tee, expires_at, consumed_at FROM challenges")
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
        assert [tuple(row) for row in rows] == [(nonce, "snp", expires_at, at)]
    finally:
        await database.close()


async def test_expired_challenges_are_purged_after_the_grace_period(cluster: LocalPostgres) -> None:
    database = await _appended(cluster, 0)
    try:
        now = datetime(2026, 1, 1, 12, tzinfo=UTC)
        ttl = timedelta(minutes=5)
        consumed = {}
        for name, issued in (
            ("old", now - timedelta(hours=2)),
            ("recent", now - timedelta(minutes=30)),
            ("live", now),
        ):
            consumed[name] = bytes([len(consumed)]) * 32
            assert await _consume(database, consumed[name], issued + ttl, issued) is not None
        assert await challenges.purge(database, now) == 1
        async with database.connection() as conn:
            left = {bytes(r["nonce"]) for r in await conn.fetch("SELECT nonce FROM challenges")}
        assert left == {consumed["recent"], consumed["live"]}
    finally:
        await database.close()


async def test_a_stale_release_context_appends_nothing_whatever_the_plan(
    cluster: LocalPostgres,
) -> None:
    """``audit_release_if_current`` must compare every field before ``audit_append`` runs,
    not only filter its result: a plan that joins the function to the key row alone, and
    checks the bound policy above it, would append a record and then return no row. The
    planner may choose that plan for an unmaterialised CTE (the genetic optimiser did, on
    other statistics): the comparison must be complete before any row reaches the function."""

    database = await _appended(cluster, 0)
    digest_1, digest_2 = "1" * 64, "2" * 64
    try:
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length)"
                " VALUES ('k', 1, 'kek-1', '\\x00', 32)"
            )
            await conn.execute(
                "INSERT INTO policies (name, version, document, digest, created_by) VALUES"
                " ('p', 1, '{}', $1, 'test'), ('p', 2, '{}', $2, 'test')",
                digest_1,
                digest_2,
            )
            await conn.execute(
                "INSERT INTO key_bindings (key_name, policy_name, updated_by)"
                " VALUES ('k', 'p', 'test')"  # bound to the latest: version 2
            )
            stale = ReleaseContext(
                "k", 1, "active", "kek-1", b"\x00", 32, BoundPolicy("p", 1, digest_1)
            )
            record = AuditRecord(datetime.now(UTC), "release", "allow", None, "k", {"x": 1})
            # The guarantee is structural: the context is compared in full (a materialised
            # CTE) before any row reaches audit_append, whatever join order is chosen.
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    "EXPLAIN (COSTS OFF) " + QUERIES["audit_release_if_current"],
                    *stale.arguments(),
                    record.at,
                    record.kind,
                    record.decision,
                    record.request_id,
                    "{}",
                    *contexts.NO_LIMITS,
                )
            )
            assert "CTE Scan on current" in plan, plan
            for seed in (0.0, 0.25, 0.5, 0.75):
                async with conn.transaction():
                    await conn.execute("SET LOCAL geqo = on")
                    await conn.execute("SET LOCAL geqo_threshold = 2")
                    await conn.execute(f"SET LOCAL geqo_seed = {seed}")
                    seq = await contexts.append_if_current(conn, stale, record)
                    assert seq is None
                    assert await conn.fetchval("SELECT seq FROM audit_head") == 0, seed
            current = ReleaseContext(
                "k", 1, "active", "kek-1", b"\x00", 32, BoundPolicy("p", 2, digest_2)
            )
            assert await contexts.append_if_current(conn, current, record) == 1
    finally:
        await database.close()


@pytest.mark.parametrize("kind", ["postgresql", "memory"])
async def test_the_release_stores_keep_the_same_promises(cluster: LocalPostgres, kind: str) -> None:
    """The in-memory store of the unit tests answers as PostgreSQL does, step by step."""
    database = await _appended(cluster, 0)
    digest = "1" * 64
    current = ReleaseContext("k", 1, "active", "kek-1", b"\x00", 32, BoundPolicy("p", 1, digest))
    try:
        store: ReleaseStore
        if kind == "postgresql":
            async with database.connection() as conn:
                await conn.execute(
                    "INSERT INTO keys (name, version, kek_label, wrapped_blob, secret_length)"
                    " VALUES ('k', 1, 'kek-1', '\\x00', 32)"
                )
                await conn.execute(
                    "INSERT INTO policies (name, version, document, digest, created_by)"
                    " VALUES ('p', 1, '{}', $1, 'test')",
                    digest,
                )
                await conn.execute(
                    "INSERT INTO key_bindings (key_name, policy_name, updated_by)"
                    " VALUES ('k', 'p', 'test')"
                )
                await conn.execute(
                    "INSERT INTO kbs_paths (repository, type, tag, key_name, updated_by)"
                    " VALUES ('default', 'key', 'k', 'k', 'test')"
                )
            store = PostgresReleaseStore(database)
        else:
            store = MemoryReleaseStore([current], {("p", 1): "{}"}, {"default/key/k": "k"})
        at = datetime(2026, 1, 1, 12, tzinfo=UTC)
        nonce, expires_at = bytes(32), at + timedelta(minutes=5)

        def record(kind: str, key_name: str | None = None) -> AuditRecord:
            return AuditRecord(at, kind, "allow", "req", key_name, {"x": 1})

        assert await store.context("k") == current
        assert await store.context("absent") is None
        assert await store.key_at_path(KbsPath("default", "key", "k")) == "k"
        assert await store.key_at_path(KbsPath("default", "key", "K")) is None
        assert await store.policy_document("p", 1) == "{}"
        assert await store.policy_document("p", 2) is None
        assert await store.consume_nonce_and_append(nonce, "snp", expires_at, record("a")) == 1
        assert await store.consume_nonce_and_append(nonce, "snp", expires_at, record("a")) is None
        assert await store.append(record("attest")) == 2
        assert await store.append_if_current(current, record("release", "k")) == 3
        for stale in (
            replace(current, version=2),
            replace(current, state="disabled"),
            replace(current, wrapped_blob=b"\x01"),
            replace(current, policy=None),
            replace(current, policy=BoundPolicy("p", 1, "2" * 64)),
            replace(current, exposure="broker-memory"),
        ):
            assert await store.append_if_current(stale, record("release", "k")) is None
        with pytest.raises(InternalError, match="checked against another"):
            await store.append_if_current(current, record("release", "other"))
        assert await store.append(record("release", "k")) == 4
    finally:
        await database.close()


class _RotationWatcher:
    """A custody stand-in whose rotation reports whether the rotation lock was held."""

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self.db, self.loop = db, loop
        self.locks_seen: list[int] = []

    def rotate_kek(self) -> str:  # called on a worker thread, as the real one is
        async def held() -> int:
            async with self.db.connection() as other:  # another session sees the lock
                count: int = await other.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                )
            return count

        self.locks_seen.append(asyncio.run_coroutine_threadsafe(held(), self.loop).result(10))
        return "keybroker-kek-v2"


async def test_kek_rotation_holds_the_rotation_lock_and_releases_it(db: Database) -> None:
    watcher = _RotationWatcher(db, asyncio.get_running_loop())
    admin = AdminService(cast(Runtime, SimpleNamespace(db=db, custody=watcher)))
    answer = await admin.rotate_kek(Principal("custodian", Role.KEY_CUSTODIAN))
    assert answer == {"kek_label": "keybroker-kek-v2"}
    assert watcher.locks_seen == [1]  # held while the token was changed
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        record = await conn.fetchval("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert '"action":"kek.rotate"' in record
