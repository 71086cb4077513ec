"""KEK rotation with re-wrap inside the HSM, and retirement (PostgreSQL, SoftHSM, a real
broker on loopback).

The token is the session's, shared with every other module: this module retires only KEKs
it made itself, after re-sealing its own keys, so no other module's blob loses its KEK.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from tests.integration.release_support import (
    Deployment,
    admin_client,
    approved_guest,
    fetch,
    one_kit_deployment,
    seed,
    snp_policy,
)

pytestmark = pytest.mark.integration

#: Not a multiple of 8: SoftHSM pads KWP input and records the padded length, which the
#: re-wrap must carry over without changing the secret the guest receives.
SECRET = os.urandom(33)


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("kek"), softhsm) as running:
        yield running


def _status(deployment: Deployment) -> dict[str, Any]:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        answer = auditor.get("/v1/admin/kek")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


def _sealing(status: dict[str, Any]) -> dict[str, int]:
    return {kek["label"]: kek["key_versions"] for kek in status["keks"] if kek["key_versions"]}


async def _rewrap_records(deployment: Deployment) -> list[dict[str, Any]]:
    async with deployment.db.connection() as conn:
        rows = await conn.fetch("SELECT record FROM audit_log WHERE kind = 'admin' ORDER BY seq")
    records = [json.loads(row["record"]) for row in rows]
    return [r for r in records if r["action"] == "kek.rewrap"]


async def test_rewrap_reseals_every_version_while_releases_go_on(deployment: Deployment) -> None:
    seed(deployment, "kept", SECRET, snp_policy("kept-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        for index in range(24):
            created = custodian.post(
                "/v1/admin/keys", json={"name": f"bulk-{index:02}", "generate_length": 32}
            )
            assert created.status_code == 201, created.text
        rotated = custodian.post("/v1/admin/kek/rotate").json()["kek_label"]
    before = _status(deployment)
    assert before["current"] == rotated
    old = {label: count for label, count in _sealing(before).items() if label != rotated}
    assert sum(old.values()) == 25
    assert await fetch(deployment, "kept", approved_guest(deployment)) == SECRET

    def rewrap_in_steps() -> list[dict[str, Any]]:
        with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
            steps = []
            while True:
                step = custodian.post("/v1/admin/kek/rewrap", params={"limit": 2})
                assert step.status_code == 200, step.text
                steps.append(step.json())
                if step.json()["remaining"] == 0:
                    return steps

    async def releases() -> list[bytes]:
        # One guest after another: a guest's RSA key generation holds this event loop, and
        # guests side by side would leave each other's connections idle past keep-alive.
        return [await fetch(deployment, "kept", approved_guest(deployment)) for _ in range(4)]

    # Releases of the key run while its versions are re-sealed under them.
    steps, secrets = await asyncio.gather(asyncio.to_thread(rewrap_in_steps), releases())
    assert secrets == [SECRET] * 4
    assert [step["rewrapped"] for step in steps] == [2] * 12 + [1]
    assert [step["remaining"] for step in steps] == [*range(23, 0, -2), 0]
    assert {step["kek_label"] for step in steps} == {rotated}

    after = _status(deployment)
    assert _sealing(after) == {rotated: 25}
    assert after["missing"] == {}
    assert await fetch(deployment, "kept", approved_guest(deployment)) == SECRET
    records = await _rewrap_records(deployment)
    assert sum(r["versions"] for r in records) == 25
    assert all(r["kek_label"] == rotated for r in records)

    # Nothing left to do: a further re-wrap re-seals nothing and records nothing.
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        again = custodian.post("/v1/admin/kek/rewrap").json()
    assert again == {"kek_label": rotated, "rewrapped": 0, "access_keys": 0, "remaining": 0}
    assert len(await _rewrap_records(deployment)) == len(records)


async def test_retire_refuses_while_in_use_and_destroys_once_free(deployment: Deployment) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        first = custodian.post("/v1/admin/kek/rotate").json()["kek_label"]
        made = custodian.post("/v1/admin/keys", json={"name": "on-first", "generate_length": 33})
        assert made.json()["kek_label"] == first
        first_version = int(first.rsplit("v", 1)[1])

        current = custodian.post(f"/v1/admin/kek/{first_version}/retire")
        assert current.status_code == 409
        assert current.json()["detail"] == f"{first} is the current KEK; rotate first, then re-wrap"

        second = custodian.post("/v1/admin/kek/rotate").json()["kek_label"]
        in_use = custodian.post(f"/v1/admin/kek/{first_version}/retire")
        assert in_use.status_code == 409
        assert in_use.json()["detail"] == (
            f"1 key version is sealed under {first}; re-seal them first (`keybroker kek rewrap`)"
        )

        assert custodian.post("/v1/admin/kek/rewrap").json()["remaining"] == 0
        retired = custodian.post(f"/v1/admin/kek/{first_version}/retire")
        assert retired.status_code == 200, retired.text
        assert retired.json() == {"kek_label": first, "retired": True}

        gone = custodian.post(f"/v1/admin/kek/{first_version}/retire")
        assert gone.status_code == 404
        assert gone.json()["detail"] == f"no KEK {first} on the token"
        for bad in ("0", "x", "99999999999"):
            assert custodian.post(f"/v1/admin/kek/{bad}/retire").status_code == 400
    labels = [kek["label"] for kek in _status(deployment)["keks"]]
    assert first not in labels
    assert second in labels
    async with deployment.db.connection() as conn:
        record = await conn.fetchval(
            "SELECT record FROM audit_log WHERE kind = 'admin' ORDER BY seq DESC LIMIT 1"
        )
    assert json.loads(record)["action"] == "kek.retire"
    assert json.loads(record)["kek_label"] == first


async def test_kms_access_keys_are_resealed_and_hold_their_kek_until_then(
    deployment: Deployment,
) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        sealing = custodian.post("/v1/admin/kek/rotate").json()["kek_label"]
    with admin_client(deployment, Role.ADMIN) as admin:
        created = admin.post("/v1/admin/access-keys", json={"name": "rewrapped-signer"})
    assert created.status_code == 201, created.text
    access_key = created.json()
    (entry,) = [k for k in _status(deployment)["keks"] if k["label"] == sealing]
    assert (entry["key_versions"], entry["access_keys"]) == (0, 1)
    sealing_version = int(sealing.rsplit("v", 1)[1])
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        newest = custodian.post("/v1/admin/kek/rotate").json()["kek_label"]
        in_use = custodian.post(f"/v1/admin/kek/{sealing_version}/retire")
        assert in_use.status_code == 409
        assert in_use.json()["detail"] == (
            f"1 KMS access key is sealed under {sealing}; re-seal them first "
            "(`keybroker kek rewrap`)"
        )
        rewrap = custodian.post("/v1/admin/kek/rewrap").json()
        # (The other tests' key versions are re-sealed too.)
        assert (rewrap["kek_label"], rewrap["access_keys"], rewrap["remaining"]) == (newest, 1, 0)
        retired = custodian.post(f"/v1/admin/kek/{sealing_version}/retire")
        assert retired.status_code == 200, retired.text
    records = await _rewrap_records(deployment)
    assert records[-1]["access_keys"] == 1
    assert records[-1]["from"] == {sealing: 1}
    # The broker opens the secret for the first time now, from its re-sealed blob: a request
    # it signs is accepted.
    kms = boto3.client(
        "kms",
        endpoint_url=deployment.base,
        region_name="eu-west-1",
        aws_access_key_id=access_key["access_key_id"],
        aws_secret_access_key=access_key["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )
    assert kms.list_keys(Limit=998)["Keys"] == []  # a call of its own (not a replay)


def test_only_custodians_rewrap_and_retire(deployment: Deployment) -> None:
    for role in (Role.ADMIN, Role.AUDITOR, Role.POLICY_AUTHOR):
        with admin_client(deployment, role) as client:
            assert client.post("/v1/admin/kek/rewrap").status_code == 403
            assert client.post("/v1/admin/kek/1/retire").status_code == 403
            assert client.get("/v1/admin/kek").status_code == 200
    with httpx.Client(base_url=deployment.base) as anonymous:
        assert anonymous.post("/v1/admin/kek/rewrap").status_code == 401


def test_a_rewrap_limit_must_be_positive(deployment: Deployment) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.post("/v1/admin/kek/rewrap", params={"limit": 0})
    assert answer.status_code == 400
    assert answer.json()["detail"] == "limit must be at least 1"
