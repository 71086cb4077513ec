"""A real broker for end-to-end release tests, and what those tests do with it.

:func:`running_deployment` starts a broker (uvicorn on loopback) with its own PostgreSQL
cluster, the session's SoftHSM token, the given synthetic roots trusted through
``insecure_test_roots``, and one admin token per role. The helpers seed keys and policies
through the admin API, run a simulated guest, build hand-made attest requests, and read the
audit log, so every test module of the release flow drives the broker the same way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.guest.client import GuestClient, GuestError
from broker.guest.sources import BindingInput, EvidenceSource
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.settings import Settings
from broker.store import admin_tokens
from broker.store.admin_tokens import Role
from broker.store.database import Database
from tests.integration.server import running_broker


@dataclass
class Deployment:
    base: str
    db: Database
    kits: dict[str, Path]
    tokens: dict[Role, str]
    cluster: LocalPostgres


@asynccontextmanager
async def running_deployment(
    directory: Path,
    softhsm: LocalSoftHsm,
    test_roots: Sequence[Path],
    kits: dict[str, Path],
) -> AsyncIterator[Deployment]:
    """A broker with its own database under ``directory`` that trusts ``test_roots`` (PEM
    files, each named ``insecure-test-<file stem>``)."""
    own = LocalPostgres(directory / "pg")
    dsn = own.up()
    settings = Settings(
        state_dir=directory,
        database_url=Secret(dsn),
        token_label=softhsm.token_label,
        user_pin_file=softhsm.user_pin_file,
        insecure_test_roots=tuple(test_roots),
        rate_limit_per_second=0,
        db_pool_min=1,
        db_pool_max=20,
        log_format="json",
        log_level="warning",
    )
    try:
        with running_broker(settings) as base:
            db = await Database.connect(dsn, 1, 4)
            tokens = {}
            for role in Role:
                _, token = await admin_tokens.create(db, f"test-{role.value}", role, "test")
                tokens[role] = token.reveal()
            try:
                yield Deployment(base, db, kits, tokens, own)
            finally:
                await db.close()
    finally:
        own.stop()


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
    deployment: Deployment, key: str, source: EvidenceSource, bits: int = 3072
) -> bytes:
    """The whole guest side: challenge, attest, release, unwrap; the secret it received."""
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        released = await GuestClient(http).fetch(source, key, bits)
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
