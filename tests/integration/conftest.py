"""Real PostgreSQL and a real SoftHSM token, brought up once per test session.

The cluster and the token live under a temporary state directory created with the same code
`make run` uses (``broker.localstate``). Every test shares one token (SoftHSM reads its
configuration once per process) and one migrated database; tests that need a pristine
database create their own inside the same cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.settings import Settings
from broker.store.database import Database
from broker.store.migrate import migrate
from hsm.custody import Custody


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def cluster(state_dir: Path) -> Iterator[LocalPostgres]:
    local = LocalPostgres(state_dir)
    local.up()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def softhsm(state_dir: Path) -> LocalSoftHsm:
    local = LocalSoftHsm(state_dir)
    local.up()
    os.environ.update(local.environment())
    return local


@pytest.fixture(scope="session")
def custody(softhsm: LocalSoftHsm) -> Iterator[Custody]:
    opened = Custody.open(softhsm.module_path, softhsm.token_label, softhsm.user_pin, threads=4)
    opened.ensure_ready()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def settings(state_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm) -> Settings:
    return Settings(state_dir=state_dir, log_format="json", hsm_threads=4)


@pytest.fixture(scope="session")
async def db(cluster: LocalPostgres) -> AsyncIterator[Database]:
    database = await Database.connect(cluster.dsn(), 2, 10)
    async with database.connection() as conn:
        await migrate(conn)
    yield database
    await database.close()


async def create_database(cluster: LocalPostgres) -> str:
    """A new empty database in the session cluster; returns its DSN."""
    name = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(cluster.dsn("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return cluster.dsn(name)


@pytest.fixture(scope="session")
def other_token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What a broker on another, fresh token makes: an ``snp`` nonce under that token's nonce
    key, and the number of nonce keys on it after two starts (``other_token.py``)."""
    state_dir = tmp_path_factory.mktemp("other-token")
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.other_token", str(state_dir), "snp"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"the other token's broker failed: {result.stderr}")
    answer: dict[str, object] = json.loads(result.stdout)
    return answer
