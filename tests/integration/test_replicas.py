"""Replicas: separate ``keybroker serve`` processes on one PostgreSQL and one token.

Two replicas started at the same moment on a fresh token both come up: provisioning its
first objects is serialised by the database's lock on the token's objects (before, each
could create its own and both then refused the token: 3 starts in 6). A token that an older
version left with duplicates is repaired by ``keybroker token repair``, which keeps the KEK
that unwraps the stored keys. (A nonce issued by one replica and redeemed on another, and
the replay refused across them: ``test_release_flow.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.store import keys
from broker.store.database import Database
from broker.store.migrate import migrate
from hsm.custody import WrappedSecret
from tests.integration.conftest import create_database
from tests.integration.server import ROOT, broker_processes

pytestmark = pytest.mark.integration


def _keybroker(state_dir: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args, "--state-dir", str(state_dir)],
        env={**os.environ, "KEYBROKER_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )


NOTHING_TO_REPAIR = (
    "the token holds one object under each of the broker's labels: nothing to repair\n"
)


async def test_two_replicas_started_at_once_on_a_fresh_token_both_come_up(
    tmp_path: Path, cluster: LocalPostgres
) -> None:
    state_dir = tmp_path / "state"
    LocalSoftHsm(state_dir).up()  # initialised, holding none of the broker's objects yet
    dsn = await create_database(cluster)
    logs = [tmp_path / "replica-1.log", tmp_path / "replica-2.log"]
    with broker_processes(state_dir, logs, database_url=dsn) as bases:
        assert len(bases) == 2  # both answered /readyz: neither refused the token
    repaired = _keybroker(state_dir, dsn, "token", "repair")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout == NOTHING_TO_REPAIR


def _doubled_token(mode: str, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.doubled_token", mode, str(state_dir), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )


async def test_a_token_left_with_duplicates_is_repaired_keeping_the_kek_in_use(
    tmp_path: Path, cluster: LocalPostgres
) -> None:
    state_dir = tmp_path / "state"
    doubled = _doubled_token("double", state_dir)
    assert doubled.returncode == 0, doubled.stderr
    made = json.loads(doubled.stdout)
    refused = _doubled_token("check", state_dir, made["blob"])
    assert refused.returncode == 1
    assert "the token holds several objects under one label" in refused.stderr
    dsn = await create_database(cluster)
    db = await Database.connect(dsn, 1, 1)
    try:
        async with db.connection() as conn:
            await migrate(conn)
            wrapped = WrappedSecret(bytes.fromhex(made["blob"]), 32, "keybroker-kek-v1")
            await keys.insert_key_version(conn, "disk-key", wrapped, "cli:test")
    finally:
        await db.close()

    planned = _keybroker(state_dir, dsn, "token", "repair")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines() == [
        "SECRET_KEY 'keybroker-kek-v1': 2 objects; keeping one (it unwraps all 1 key versions "
        "wrapped under keybroker-kek-v1), destroying 1",
        "SECRET_KEY 'keybroker-nonce-key-v1': 2 objects; keeping one (the one a broker finds "
        "first), destroying 1",
        "PRIVATE_KEY 'keybroker-signing': 2 objects; keeping one (the one a broker finds "
        "first), destroying 1",
        "PUBLIC_KEY 'keybroker-signing': 2 objects; keeping one (the kept key's), destroying 1",
        "nothing destroyed: run again with --yes to repair",
    ]
    still = _doubled_token("check", state_dir, made["blob"])
    assert still.returncode == 1  # the plan destroyed nothing

    repaired = _keybroker(state_dir, dsn, "token", "repair", "--yes")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.splitlines()[-1] == "repaired"
    checked = _doubled_token("check", state_dir, made["blob"])
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"unwraps": True}  # the KEK in use was kept
    again = _keybroker(state_dir, dsn, "token", "repair")
    assert again.stdout == NOTHING_TO_REPAIR
    db = await Database.connect(dsn, 1, 1)
    try:
        async with db.connection() as conn:
            record = await conn.fetchval(
                "SELECT record FROM audit_log WHERE kind = 'admin' ORDER BY seq DESC LIMIT 1"
            )
    finally:
        await db.close()
    assert json.loads(record)["action"] == "token.repair"
    assert len(json.loads(record)["destroyed"]) == 4
