"""Requests in which nothing the broker issued is recognised, against a real broker and its
PostgreSQL: no audit record each, one aggregate record per source when the window closes
(here at shutdown); and refusals after a nonce or token the broker issued, audited alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from broker import jose
from broker.guest.client import GuestClient, tee_jwk
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.release.nonces import VERSION, Nonces
from broker.settings import Settings
from broker.simulate.guests import SimulatedSnp
from broker.store.audit import verify_chain
from hsm.custody import Custody
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    audit_rows,
    running_deployment,
    save_snp_kit,
)

pytestmark = pytest.mark.integration

ATTEST, RELEASE = "/v1/attest", "/v1/keys/{name}/release"
JUNK_EACH = 60


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("unauth")
    save_snp_kit(directory, "kit-a")
    return directory


@pytest.fixture
async def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    deployment_dir: Path,
    cluster: LocalPostgres,
    softhsm: LocalSoftHsm,
) -> AsyncIterator[Deployment]:
    """A broker of its own per test, so a test may stop it and read what shutdown wrote."""
    directory = tmp_path_factory.mktemp("broker")  # short: a unix socket path fits 107 bytes
    kits = {"kit-a": deployment_dir / "kit-a"}
    roots = (deployment_dir / "kit-a.pem",)
    async with running_deployment(directory, softhsm, roots, kits) as running:
        yield running


def _junk_attest(jwk: dict[str, str], nonce: bytes) -> dict[str, Any]:
    return {
        "tee": "snp",
        "evidence": base64.b64encode(os.urandom(1184)).decode(),
        "tee_pubkey": jwk,
        "nonce": base64.b64encode(nonce).decode(),
    }


async def _send_junk(deployment: Deployment) -> dict[str, int]:
    """``JUNK_EACH`` requests of each kind, 16 at a time; how many of each got the expected
    refusal."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    kid = jose.key_id(deployment.app.state.runtime.custody.signing_public_key)
    forged = jose.sign_sync(
        {"iss": "keybroker"}, jose.TYP_ATTESTATION_RESULT, kid, lambda digest: os.urandom(64)
    )
    kinds: dict[str, tuple[str, dict[str, Any]]] = {
        # The issue's junk: a random nonce, and `Bearer a.b.c`.
        "nonce-mac": (ATTEST, {"json": _junk_attest(jwk, bytes([VERSION]) + os.urandom(31))}),
        "nonce-malformed": (ATTEST, {"json": _junk_attest(jwk, bytes(32))}),
        "token-malformed": ("/v1/keys/k/release", {"headers": {"Authorization": "Bearer a.b.c"}}),
        "token-signature": (
            "/v1/keys/k/release",
            {"headers": {"Authorization": f"Bearer {forged}"}},
        ),
    }
    expected = {"nonce-mac": 409, "nonce-malformed": 409}
    gate = asyncio.Semaphore(16)
    refused: dict[str, int] = dict.fromkeys(kinds, 0)

    async def one(http: httpx.AsyncClient, reason: str) -> None:
        path, options = kinds[reason]
        async with gate:
            answer = await http.post(path, **options)
        wanted = ("nonce-unknown", 409) if reason in expected else ("token-invalid", 401)
        if (answer.json()["type"].rsplit("/", 1)[1], answer.status_code) == wanted:
            refused[reason] += 1

    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        await asyncio.gather(*(one(http, reason) for reason in kinds for _ in range(JUNK_EACH)))
    return refused


async def _unauthenticated_records(deployment: Deployment) -> list[dict[str, Any]]:
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT decision, request_id, key_name, record FROM audit_log"
            " WHERE kind = 'unauthenticated' ORDER BY seq"
        )
    return [
        {
            "decision": row["decision"],
            "request_id": row["request_id"],
            "key_name": row["key_name"],
            **json.loads(row["record"]),
        }
        for row in rows
    ]


async def test_junk_appends_no_record_each_and_one_per_source_when_its_window_closes(
    deployment: Deployment,
) -> None:
    rows = await audit_rows(deployment)
    junk_started = datetime.now(UTC)
    refused = await _send_junk(deployment)
    assert refused == dict.fromkeys(refused, JUNK_EACH)  # each answered as before
    # None appended a record of its own: all that may appear while junk arrives is the
    # aggregate of a window that closed meanwhile (a loaded machine can take over a minute).
    assert await audit_rows(deployment) == rows + len(await _unauthenticated_records(deployment))

    async with httpx.AsyncClient(base_url=deployment.base) as http:
        metrics = (await http.get("/metrics")).text
    for endpoint, reason in (
        (ATTEST, "nonce-mac"),
        (ATTEST, "nonce-malformed"),
        (RELEASE, "token-malformed"),
        (RELEASE, "token-signature"),
    ):
        sample = (
            f'keybroker_unauthenticated_requests_total{{endpoint="{endpoint}",reason="{reason}"}}'
        )
        assert f"{sample} {float(JUNK_EACH)}" in metrics

    deployment.stop_broker()  # shutdown writes the window it holds
    records = await _unauthenticated_records(deployment)
    assert await audit_rows(deployment) == rows + len(records)
    minutes_touched = int((datetime.now(UTC) - junk_started).total_seconds() // 60) + 2
    assert 1 <= len(records) <= minutes_touched  # one per source and window, not per request
    totals: dict[str, dict[str, int]] = {}
    for record in records:
        assert (record["decision"], record["request_id"], record["key_name"]) == (
            "deny",
            None,
            None,
        )
        assert record["source"] == "127.0.0.1"
        assert record["total"] == sum(sum(r.values()) for r in record["requests"].values())
        start = datetime.fromisoformat(record["window"]["start"])
        assert start < datetime.fromisoformat(record["window"]["end"])
        for endpoint, reasons in record["requests"].items():
            for reason, count in reasons.items():
                totals.setdefault(endpoint, {}).setdefault(reason, 0)
                totals[endpoint][reason] += count
    assert totals == {
        ATTEST: {"nonce-mac": JUNK_EACH, "nonce-malformed": JUNK_EACH},
        RELEASE: {"token-malformed": JUNK_EACH, "token-signature": JUNK_EACH},
    }
    last_end = datetime.fromisoformat(records[-1]["window"]["end"])
    assert junk_started < last_end <= datetime.now(UTC)
    report = await verify_chain(deployment.db)
    assert report.ok, report


def _minted(custody: Custody, issued_at: datetime) -> str:
    """An snp nonce as the broker would have issued it at ``issued_at`` (same token, so the
    same nonce key)."""
    authority = Nonces(custody.nonce_mac_key(), Settings().challenge_ttl_seconds)
    return base64.b64encode(authority.issue("snp", issued_at)[0]).decode()


async def test_refusals_after_a_nonce_or_token_the_broker_issued_are_audited_one_by_one(
    deployment: Deployment, custody: Custody
) -> None:
    owner = rsa.generate_private_key(65537, 3072)
    _, thief = tee_jwk(rsa.generate_private_key(65537, 3072))
    _, jwk = tee_jwk(owner)
    expired = _minted(custody, datetime.now(UTC) - timedelta(hours=1))
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        source = SimulatedSnp(deployment.kits["kit-a"], measurement=GOOD_MEASUREMENT)
        token = await GuestClient(http).attest(source, owner)
        rows = await audit_rows(deployment)
        for _ in range(3):
            late = await http.post("/v1/attest", json=_junk_attest(jwk, base64.b64decode(expired)))
            assert late.json()["type"].endswith("/nonce-expired")
            stolen = await http.post(
                "/v1/keys/k/release",
                headers={"Authorization": f"Bearer {token}"},
                json={"tee_pubkey": thief},
            )
            assert stolen.json()["type"].endswith("/token-invalid")
        assert await audit_rows(deployment) == rows + 6  # one each, at once
    deployment.stop_broker()
    assert await _unauthenticated_records(deployment) == []  # nothing in aggregate
