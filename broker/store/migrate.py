"""Apply the ordered migrations of ``sql/migrations`` exactly once each.

Several broker processes may start at once (uvicorn workers, replicas): a transaction-scoped
advisory lock makes them take turns, and each migration runs in its own transaction with its
record in ``schema_migrations``. A migration whose file changed after it ran is refused,
because the database would no longer match the code that describes it.
"""

from __future__ import annotations

import asyncpg

from broker.errors import ConfigurationError
from broker.store.sqlfiles import MIGRATIONS, Migration

_LOCK_ID = 0x6B657962726F6B  # "keybrok": any constant shared by all broker processes

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations; return the ones applied now."""
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(_BOOKKEEPING)
        done = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in MIGRATIONS:
            recorded = done.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        f"was applied (checksum {recorded[:12]} != {migration.checksum[:12]})"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    return applied_now
