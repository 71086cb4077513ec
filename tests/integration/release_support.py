"""A real broker for end-to-end release tests, and what those tests do with it.

:func:`running_deployment` starts a broker (uvicorn on loopback) with its own PostgreSQL
cluster, the session's SoftHSM token, the given synthetic roots trusted through
``insecure_test_roots``, and one admin token per role. The helpers seed keys and policies
through the admin API, run a simulated guest, build hand-made attest requests, and read the
audit log, so every test module of the release flow drives the broker the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import BindingInput, EvidenceSource

from broker.api.middleware import Edge
from broker.app import create_app
from broker.guest.client import GuestClient, GuestError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.roles import Role
from broker.settings import Settings
from broker.simulate.guests import SimulatedSnp
from broker.simulate.snp import SnpKit
from broker.store import admin_tokens, audit
from broker.store.database import Database
from broker.store.sqlfiles import QUERIES
from tests.integration.server import broker_options, serving

T = TypeVar("T")

GOOD_MEASUREMENT = hashlib.sha384(b"approved image").digest()


def snp_policy(name: str, root: str, minimum_snp: int = 0, version: int = 1) -> dict[str, Any]:
    """A policy admitting SNP guests of ``root`` that run the image ``GOOD_MEASUREMENT`` at
    VMPL 0 with a TCB SNP level of at least ``minimum_snp``."""
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": version,
        "reference_values": {
            "approved": {"tee": "snp", "values": [{"measurement": GOOD_MEASUREMENT.hex()}]}
        },
        "admit": {
            "snp": {
                "signer": {"roots": [root]},
                "reference_values": ["approved"],
                "minimum_tcb": {"bootloader": 0, "tee": 0, "snp": minimum_snp, "microcode": 0},
                "require": [{"claim": "vmpl", "equals": 0}],
            }
        },
    }


def save_snp_kit(root_dir: Path, name: str) -> Path:
    """A new synthetic AMD kit saved as ``root_dir/name``, its ARK as ``root_dir/name.pem``."""
    kit = SnpKit.generate(rsa_bits=2048)
    folder = root_dir / name
    kit.save(folder)
    (root_dir / f"{name}.pem").write_bytes(kit.ark.public_bytes(Encoding.PEM))
    return folder


@dataclass
class Deployment:
    base: str
    db: Database
    kits: dict[str, Path]
    tokens: dict[Role, str]
    cluster: LocalPostgres
    app: Edge
    """The broker serving ``base`` (its state holds the release service)."""
    stop_broker: Callable[[], None]
    """Shut the broker down (its lifespan's end runs) and leave the database up."""


@asynccontextmanager
async def running_deployment(
    directory: Path,
    softhsm: LocalSoftHsm,
    test_roots: Sequence[Path],
    kits: dict[str, Path],
    *,
    stat_statements: bool = False,
    **overrides: Any,
) -> AsyncIterator[Deployment]:
    """A broker with its own database under ``directory`` that trusts ``test_roots`` (PEM
    files, each named ``insecure-test-<file stem>``), with other settings as ``overrides``;
    ``stat_statements`` loads PostgreSQL's pg_stat_statements (see :func:`statements`)."""
    own = LocalPostgres(directory / "pg")
    dsn = own.up()
    if stat_statements:
        await _load_stat_statements(own, dsn)
    settings = Settings(
        state_dir=directory,
        database_url=Secret(dsn),
        token_label=softhsm.token_label,
        user_pin_file=softhsm.user_pin_file,
        insecure_test_roots=tuple(test_roots),
        # The tests race many requests from one address, as a fleet behind one NAT would.
        rate_limit_per_second=0,
        max_open_requests_per_client=0,
        db_pool_min=1,
        db_pool_max=20,
        log_format="json",
        log_level="warning",
        **overrides,
    )
    try:
        app = create_app(settings)
        with ExitStack() as broker:
            base = broker.enter_context(serving(app, **broker_options(settings)))
            db = await Database.connect(dsn, 1, 4)
            tokens = {}
            for role in Role:
                _, token = await admin_tokens.create(db, f"test-{role.value}", role, "test")
                tokens[role] = token.reveal()
            try:
                yield Deployment(base, db, kits, tokens, own, app, broker.close)
            finally:
                await db.close()
    finally:
        own.stop()


@asynccontextmanager
async def one_kit_deployment(directory: Path, softhsm: LocalSoftHsm) -> AsyncIterator[Deployment]:
    """A broker with its own database under ``directory`` trusting one synthetic AMD kit,
    ``kit-a`` (its root ``insecure-test-kit-a``)."""
    kits = {"kit-a": save_snp_kit(directory, "kit-a")}
    async with running_deployment(directory, softhsm, [directory / "kit-a.pem"], kits) as running:
        yield running


def approved_guest(deployment: Deployment) -> SimulatedSnp:
    """A guest of ``kit-a`` running the approved image (:data:`GOOD_MEASUREMENT`)."""
    return SimulatedSnp(deployment.kits["kit-a"], measurement=GOOD_MEASUREMENT)


def admin_client(deployment: Deployment, role: Role) -> httpx.Client:
    return httpx.Client(
        base_url=deployment.base, headers={"Authorization": f"Bearer {deployment.tokens[role]}"}
    )


def seed(deployment: Deployment, key: str, secret: bytes, policy: dict[str, Any]) -> None:
    """Import ``secret`` as ``key``, publish ``policy`` and bind it to the key."""
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        created = custodian.post(
            "/v1/admin/keys", json={"name": key, "secret": base64.b64encode(secret).decode()}
        )
        assert created.status_code == 201, created.text
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        published = author.post("/v1/admin/policies", json={"document": policy})
        assert published.status_code == 201, published.text
        bound = author.put(f"/v1/admin/keys/{key}/policy", json={"policy": policy["name"]})
        assert bound.status_code == 200, bound.text


async def fetch(
    deployment: Deployment,
    key: str,
    source: EvidenceSource,
    bits: int = 3072,
    *,
    flow: str = "token",
) -> bytes:
    """The whole guest side: challenge, attest, release, unwrap (``flow="one-request"``:
    challenge, release with the evidence, unwrap); the secret it received."""
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        released = await GuestClient(http).fetch(source, key, bits, flow=flow)
    return released.secret


async def denied(deployment: Deployment, key: str, source: EvidenceSource) -> GuestError:
    """The refusal a guest gets for ``key`` (the test fails if the key is released)."""
    with pytest.raises(GuestError) as caught:
        await fetch(deployment, key, source)
    return caught.value


def failed_rules(error: GuestError) -> list[str]:
    """``"<kind> <rule> <claim>"`` for each reason of a policy denial."""
    return [
        f"{reason['kind']} {reason['rule']} {reason.get('claim')}"
        for reason in error.problem["reasons"]
    ]


def attest_body(
    source: EvidenceSource, jwk: dict[str, str], nonce: str, binding: BindingInput
) -> dict[str, Any]:
    """An attest request for ``nonce`` whose evidence binds ``binding`` (which a test may
    make wrong on purpose)."""
    evidence, collateral = source.produce(binding)
    return {
        "tee": source.tee,
        "evidence": base64.b64encode(evidence).decode(),
        "tee_pubkey": jwk,
        "nonce": nonce,
        "collateral": {k: base64.b64encode(v).decode() for k, v in collateral.items()},
    }


async def last_audit(deployment: Deployment, kind: str) -> dict[str, Any]:
    """The newest audit record of ``kind`` (attest, release), with its decision."""
    async with deployment.db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT decision, record FROM audit_log WHERE kind = $1 ORDER BY seq DESC LIMIT 1", kind
        )
    return {"decision": row["decision"], **json.loads(row["record"])}


async def audit_rows(deployment: Deployment) -> int:
    """How many records the audit log holds."""
    return sum((await audit.counts(deployment.db)).values())


async def _load_stat_statements(cluster: LocalPostgres, dsn: str) -> None:
    """Restart ``cluster`` with pg_stat_statements loaded and create the extension."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    cluster.stop()
    cluster.start()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


async def statements(deployment: Deployment) -> Counter[str]:
    """How many times PostgreSQL has executed each top-level statement in the broker's
    database (pg_stat_statements: counted by the server as each statement ends), by name
    where it is a named query of ``sql/queries``, else by its text. Reading these counters
    is itself left out."""
    names = {_shape(text): name for name, text in QUERIES.items()}
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT query, sum(calls)::bigint AS calls FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query NOT LIKE '%pg_stat_statements%' GROUP BY query"
        )
    counted: Counter[str] = Counter()
    for row in rows:
        counted[names.get(_shape(row["query"]), row["query"])] += row["calls"]
    return counted


# pg_stat_statements shows constants as parameters ("LIMIT 1" as "LIMIT $2"), so a statement
# is recognised by its text with every parameter and constant as "?".
_CONSTANT = re.compile(r"\$\d+|'(?:[^']|'')*'|\b(?:\d+|true|false|null)\b", re.IGNORECASE)


def _shape(sql: str) -> str:
    return " ".join(_CONSTANT.sub("?", sql).split())


async def statements_during(
    deployment: Deployment, action: Callable[[], Awaitable[T]]
) -> tuple[T, Counter[str]]:
    """``action``'s result and the statements PostgreSQL executed while it ran, except the
    broker's periodic purge of expired challenges and its look for keys and import wrapping
    keys due for destruction (which may start at any moment)."""
    before = await statements(deployment)
    outcome = await action()
    ran = await statements(deployment) - before
    del ran["purge_challenges"]
    del ran["key_deletion_due"]
    del ran["import_wrapping_key_expiry_due"]
    return outcome, ran
