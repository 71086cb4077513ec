"""Admin identity: tokens that expire, rotation, whoami, and failed admin authentication
and authorisation audited in aggregate (PostgreSQL, SoftHSM, a real broker on loopback)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.timeutil import utcnow
from tests.integration.release_support import Deployment, admin_client, one_kit_deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("identity"), softhsm) as running:
        yield running


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _get(
    deployment: Deployment, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    with httpx.Client(base_url=deployment.base, headers=headers or {}) as client:
        return client.get(path)


def _create(deployment: Deployment, role: str, **extra: Any) -> httpx.Response:
    with admin_client(deployment, Role.ADMIN) as admin:
        return admin.post("/v1/admin/tokens", json={"name": f"ops-{role}", "role": role, **extra})


def test_a_token_expires_after_its_days_and_says_who_it_is(deployment: Deployment) -> None:
    created = _create(deployment, "auditor", expires_in_days=30)
    assert created.status_code == 201, created.text
    token = created.json()
    expires = datetime.fromisoformat(token["expires_at"])
    assert timedelta(days=29, hours=23) < expires - utcnow() <= timedelta(days=30)
    with httpx.Client(base_url=deployment.base, headers=_bearer(token["token"])) as client:
        me = client.get("/v1/admin/whoami").json()
    assert me == {
        "actor": f"token:{token['id']}:ops-auditor",
        "role": "auditor",
        "token_id": token["id"],
        "expires_at": token["expires_at"],
    }
    default = _create(deployment, "admin").json()
    lifetime = datetime.fromisoformat(default["expires_at"]) - utcnow()
    assert timedelta(days=89, hours=23) < lifetime <= timedelta(days=90)
    with admin_client(deployment, Role.ADMIN) as admin:
        listed = {t["id"]: t for t in admin.get("/v1/admin/tokens").json()["tokens"]}
    assert listed[token["id"]]["expires_at"] == token["expires_at"]


@pytest.mark.parametrize("days", [0, 366])
def test_a_token_lives_one_day_to_a_year(deployment: Deployment, days: int) -> None:
    refused = _create(deployment, "auditor", expires_in_days=days)
    assert refused.status_code == 400
    assert refused.json()["detail"] == f"a token lives 1 to 365 days, not {days}"


async def test_an_expired_token_is_refused(deployment: Deployment) -> None:
    token = _create(deployment, "auditor").json()
    async with deployment.db.connection() as conn:
        await conn.execute(
            "UPDATE admin_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
            token["id"],
        )
    refused = _get(deployment, "/v1/admin/whoami", _bearer(token["token"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == (
        "admin token expired; ask an admin to rotate it or create another"
    )


def test_rotation_replaces_a_token_at_once(deployment: Deployment) -> None:
    old = _create(deployment, "auditor").json()
    with httpx.Client(base_url=deployment.base, headers=_bearer(old["token"])) as client:
        rotated = client.post(f"/v1/admin/tokens/{old['id']}/rotate", json={})  # its own
        assert rotated.status_code == 201, rotated.text
        refused = client.get("/v1/admin/whoami")
    new = rotated.json()
    assert (new["replaces"], new["name"], new["role"]) == (old["id"], "ops-auditor", "auditor")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "admin token was revoked"
    with httpx.Client(base_url=deployment.base, headers=_bearer(new["token"])) as client:
        assert client.get("/v1/admin/whoami").json()["token_id"] == new["id"]
    with admin_client(deployment, Role.ADMIN) as admin:
        listed = {t["id"]: t for t in admin.get("/v1/admin/tokens").json()["tokens"]}
        again = admin.post(f"/v1/admin/tokens/{old['id']}/rotate", json={})
        missing = admin.post(f"/v1/admin/tokens/{'0' * 16}/rotate", json={})
    assert listed[old["id"]]["replaced_by"] == new["id"]
    assert again.status_code == 409
    assert missing.status_code == 404


def test_only_a_holder_or_an_admin_rotates_and_duties_stay_apart(
    deployment: Deployment,
) -> None:
    custodian_id = deployment.tokens[Role.KEY_CUSTODIAN].split("_")[1]
    auditor = _create(deployment, "auditor").json()
    with admin_client(deployment, Role.ADMIN) as admin:
        # An admin rotates an auditor token, as it could create one...
        assert admin.post(f"/v1/admin/tokens/{auditor['id']}/rotate", json={}).status_code == 201
        # ... but not a custodian's, which it could not create.
        duty = admin.post(f"/v1/admin/tokens/{custodian_id}/rotate", json={})
    assert duty.status_code == 403
    assert duty.json()["detail"].startswith("separation of duties: a key-custodian token")
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        other = author.post(f"/v1/admin/tokens/{custodian_id}/rotate", json={})
    assert other.status_code == 403


async def test_zz_failed_admin_requests_are_audited_per_source_and_minute(
    deployment: Deployment,
) -> None:
    for _ in range(3):
        assert _get(deployment, "/v1/admin/keys").status_code == 401
    bad = _bearer("kbadm_" + "0" * 16 + "_" + "0" * 64)
    assert _get(deployment, "/v1/admin/keys", bad).status_code == 401
    with admin_client(deployment, Role.AUDITOR) as auditor:
        for _ in range(2):
            assert auditor.post("/v1/admin/kek/rotate").status_code == 403
        metrics = auditor.get("/metrics").text
    assert (
        'keybroker_unauthenticated_requests_total{endpoint="/v1/admin/keys",'
        'reason="admin-token-missing"} 3.0'
    ) in metrics
    deployment.stop_broker()  # its last window is written as it shuts down
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT record FROM audit_log WHERE kind = 'unauthenticated' ORDER BY seq"
        )
    requests: dict[str, dict[str, int]] = {}
    for row in rows:
        for endpoint, counts in json.loads(row["record"])["requests"].items():
            for reason, count in counts.items():
                requests.setdefault(endpoint, {}).setdefault(reason, 0)
                requests[endpoint][reason] += count
    assert requests["/v1/admin/keys"]["admin-token-missing"] >= 3
    assert requests["/v1/admin/keys"]["admin-token-invalid"] >= 1
    assert requests["/v1/admin/kek/rotate"]["admin-forbidden"] == 2
