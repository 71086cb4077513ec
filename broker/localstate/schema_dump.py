"""``pg_dump --schema-only`` of a database, normalised for comparison and review.

``make schema`` writes it to ``sql/schema.sql``; a test compares the dump of a freshly
migrated database with that file, so the migrations and the reviewed schema cannot drift.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from broker.localstate.postgres import DATABASE, SUPERUSER, LocalPostgres, postgres_bin_dir
from broker.store.database import Database
from broker.store.migrate import migrate


def dump_schema(cluster: LocalPostgres, database: str = DATABASE) -> str:
    result = subprocess.run(  # noqa: S603
        [
            str(postgres_bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "-h",
            str(cluster.socket_dir),
            "-p",
            "5432",
            "-U",
            SUPERUSER,
            "-d",
            database,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": cluster.password.reveal()},
        check=True,
    )
    return normalise(result.stdout)


def normalise(dump: str) -> str:
    """Drop comments, session settings and blank lines: what remains is the schema."""
    kept = []
    for line in dump.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        if stripped.startswith(
            ("SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")
        ):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept) + "\n"


def main() -> int:
    """Write the schema of a throw-away cluster, migrated from scratch, to sql/schema.sql."""
    with tempfile.TemporaryDirectory(prefix="keybroker-schema-") as tmp:
        cluster = LocalPostgres(Path(tmp))
        dsn = cluster.up()

        async def apply() -> None:
            db = await Database.connect(dsn, 1, 1)
            async with db.connection() as conn:
                await migrate(conn)
            await db.close()

        try:
            asyncio.run(apply())
            text = dump_schema(cluster)
        finally:
            cluster.stop()
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("sql/schema.sql")
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
