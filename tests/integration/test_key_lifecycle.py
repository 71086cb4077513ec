"""A key's life over the admin API: what `keys show` tells, and scheduled deletion until
the sealed blobs are destroyed (PostgreSQL, SoftHSM, a real broker on loopback)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.admin.service import DELETION_ACTOR, destroy_due_keys
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.timeutil import utcnow
from tests.integration.release_support import (
    Deployment,
    admin_client,
    approved_guest,
    denied,
    fetch,
    one_kit_deployment,
    seed,
    snp_policy,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("lifecycle"), softhsm) as running:
        yield running


async def _records(deployment: Deployment, key: str) -> list[dict[str, Any]]:
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT record FROM audit_log WHERE key_name = $1 AND kind = 'admin' ORDER BY seq",
            key,
        )
    return [json.loads(row["record"]) for row in rows]


async def test_show_tells_versions_keks_binding_and_who(deployment: Deployment) -> None:
    seed(deployment, "shown", os.urandom(32), snp_policy("shown-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post(
            "/v1/admin/keys/shown/versions", json={"generate_length": 16}
        ).is_success
        assert custodian.post("/v1/admin/kek/rotate").is_success
        assert custodian.post(
            "/v1/admin/keys/shown/versions", json={"generate_length": 8}
        ).is_success
        assert custodian.put("/v1/admin/keys/shown/kbs-path", json={"path": "a/b/c"}).is_success
    with admin_client(deployment, Role.AUDITOR) as auditor:
        shown = auditor.get("/v1/admin/keys/shown")
        listed = auditor.get("/v1/admin/keys").json()["keys"]
    assert shown.status_code == 200, shown.text
    key = shown.json()
    custodian_actor = key["created_by"]
    assert custodian_actor.startswith("token:")
    assert custodian_actor.endswith(":test-key-custodian")
    assert key["binding"] == {"policy": "shown-policy", "policy_version": None, "locked": False}
    assert key["kbs_path"] == "a/b/c"
    assert key["exposure"] == "hsm-only"
    assert key["kms_alias"] is None  # its policy has no kms member (test_kms shows one)
    assert key["state"] == "active"
    assert key["deletion"] is None
    assert key["destroy_after"] is None
    versions = key["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["secret_length"] for v in versions] == [32, 16, 8]
    # The third version was sealed under the KEK the rotation made, the first two before it.
    first_kek = int(versions[0]["kek_label"].rsplit("v", 1)[1])
    assert versions[1]["kek_label"] == versions[0]["kek_label"]
    assert versions[2]["kek_label"] == f"keybroker-kek-v{first_kek + 1}"
    assert all(v["created_by"] == custodian_actor for v in versions)
    # `keys list` carries the binding too.
    (row,) = [k for k in listed if k["name"] == "shown"]
    assert row["binding"] == key["binding"]
    assert row["version"] == 3
    assert "versions" not in row


def test_show_refuses_unknown_and_malformed_names(deployment: Deployment) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        missing = auditor.get("/v1/admin/keys/no-such-key")
        malformed = auditor.get("/v1/admin/keys/Upper")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no key named no-such-key"
    assert malformed.status_code == 400


@pytest.mark.parametrize(("days", "status"), [(6, 400), (31, 400), (0, 400), (-7, 400)])
def test_a_deletion_waits_seven_to_thirty_days(
    deployment: Deployment, days: int, status: int
) -> None:
    seed(deployment, f"wait-{days + 10}", os.urandom(8), snp_policy("w", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.put(
            f"/v1/admin/keys/wait-{days + 10}/deletion", json={"pending_days": days}
        )
        assert answer.status_code == status
        assert "a deletion waits 7 to 30 days" in answer.json()["detail"] or days < 0
        shown = custodian.get(f"/v1/admin/keys/wait-{days + 10}").json()
    assert shown["state"] == "active"  # nothing changed


async def test_a_key_pending_deletion_is_refused_then_restored_by_cancelling(
    deployment: Deployment,
) -> None:
    secret = os.urandom(32)
    seed(deployment, "doomed", secret, snp_policy("doomed-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post("/v1/admin/keys/doomed/disable").is_success
    assert (await denied(deployment, "doomed", approved_guest(deployment))).status == 403
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post("/v1/admin/keys/doomed/enable").is_success
    assert await fetch(deployment, "doomed", approved_guest(deployment)) == secret

    before = utcnow()
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        scheduled = custodian.put("/v1/admin/keys/doomed/deletion", json={"pending_days": 7})
        assert scheduled.status_code == 200, scheduled.text
        again = custodian.put("/v1/admin/keys/doomed/deletion", json={"pending_days": 7})
        enable = custodian.post("/v1/admin/keys/doomed/enable")
        rotate = custodian.post("/v1/admin/keys/doomed/versions", json={"generate_length": 8})
        exposure = custodian.put("/v1/admin/keys/doomed/exposure", json={"exposure": "hsm-only"})
    key = scheduled.json()
    assert key["state"] == "pending-deletion"
    assert all(v["state"] == "pending-deletion" for v in key["versions"])
    deletion = key["deletion"]
    assert deletion["destroyed_at"] is None
    assert deletion["destroy_after"] == key["destroy_after"]
    due = deletion["destroy_after"]
    assert str(before + timedelta(days=7))[:10] == due[:10]
    # Nothing about the key may change while it is pending, except cancelling.
    for refused in (again, enable, rotate, exposure):
        assert refused.status_code == 409, refused.text
        assert "pending deletion; cancel the deletion first" in refused.json()["detail"]
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        rebind = author.put("/v1/admin/keys/doomed/policy", json={"policy": "doomed-policy"})
    assert rebind.status_code == 409

    error = await denied(deployment, "doomed", approved_guest(deployment))
    assert error.status == 403
    assert error.problem["type"].endswith("/key-disabled")
    assert error.problem["detail"] == "key doomed is pending deletion"

    # Not due yet: a sweep at the scheduled time minus a second destroys nothing.
    assert (
        await destroy_due_keys(deployment.db, before + timedelta(days=7) - timedelta(seconds=1))
        == []
    )

    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        cancelled = custodian.delete("/v1/admin/keys/doomed/deletion")
        twice = custodian.delete("/v1/admin/keys/doomed/deletion")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "active"
    assert cancelled.json()["deletion"] is None
    assert twice.status_code == 409
    assert twice.json()["detail"] == "key doomed is active, not pending deletion: nothing to cancel"
    assert await fetch(deployment, "doomed", approved_guest(deployment)) == secret
    actions = [r["action"] for r in await _records(deployment, "doomed")]
    assert actions[-2:] == ["key.schedule_deletion", "key.cancel_deletion"]


async def test_cancelling_restores_a_disabled_key_disabled(deployment: Deployment) -> None:
    seed(deployment, "was-off", os.urandom(8), snp_policy("off-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post("/v1/admin/keys/was-off/disable").is_success
        assert custodian.put(
            "/v1/admin/keys/was-off/deletion", json={"pending_days": 30}
        ).is_success
        restored = custodian.delete("/v1/admin/keys/was-off/deletion").json()
    assert restored["state"] == "disabled"


async def test_a_due_deletion_destroys_every_blob_and_is_audited(deployment: Deployment) -> None:
    seed(deployment, "shredded", os.urandom(32), snp_policy("shred-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post(
            "/v1/admin/keys/shredded/versions", json={"generate_length": 8}
        ).is_success
        assert custodian.put("/v1/admin/keys/shredded/kbs-path", json={"path": "s/h/r"}).is_success
        scheduled = custodian.put("/v1/admin/keys/shredded/deletion", json={"pending_days": 7})
    due = scheduled.json()["destroy_after"]
    later = utcnow() + timedelta(days=7, seconds=5)
    destroyed = await destroy_due_keys(deployment.db, later)
    assert "shredded" in destroyed
    assert await destroy_due_keys(deployment.db, later) == []  # once

    async with deployment.db.connection() as conn:
        blobs = await conn.fetch("SELECT wrapped_blob, state FROM keys WHERE name = 'shredded'")
        path = await conn.fetchval("SELECT key_name FROM kbs_paths WHERE key_name = 'shredded'")
    assert [(row["wrapped_blob"], row["state"]) for row in blobs] == [(None, "destroyed")] * 2
    assert path is None

    with admin_client(deployment, Role.AUDITOR) as auditor:
        key = auditor.get("/v1/admin/keys/shredded").json()
    assert key["state"] == "destroyed"
    assert key["kbs_path"] is None
    assert key["deletion"]["destroy_after"] == due
    assert key["deletion"]["destroyed_at"] is not None
    assert key["updated_by"] == DELETION_ACTOR

    record = (await _records(deployment, "shredded"))[-1]
    assert record["action"] == "key.destroy"
    assert record["actor"] == DELETION_ACTOR
    assert [v["version"] for v in record["versions"]] == [1, 2]
    error = await denied(deployment, "shredded", approved_guest(deployment))
    assert error.status == 403
    assert error.problem["detail"] == "key shredded is destroyed"

    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        reuse = custodian.post("/v1/admin/keys", json={"name": "shredded", "generate_length": 8})
        rotate = custodian.post("/v1/admin/keys/shredded/versions", json={"generate_length": 8})
        cancel = custodian.delete("/v1/admin/keys/shredded/deletion")
    assert reuse.status_code == 409  # a name names one key, ever
    assert rotate.status_code == 409
    assert rotate.json()["detail"] == "key shredded was destroyed; nothing about it can change"
    assert cancel.status_code == 409


def test_only_custodians_schedule_and_cancel(deployment: Deployment, tmp_path: Path) -> None:
    seed(deployment, "guarded", os.urandom(8), snp_policy("g-policy", "insecure-test-kit-a"))
    for role in (Role.ADMIN, Role.AUDITOR, Role.POLICY_AUTHOR):
        with admin_client(deployment, role) as client:
            put = client.put("/v1/admin/keys/guarded/deletion", json={"pending_days": 7})
            delete = client.delete("/v1/admin/keys/guarded/deletion")
        assert (put.status_code, delete.status_code) == (403, 403)
    with httpx.Client(base_url=deployment.base) as anonymous:
        assert anonymous.get("/v1/admin/keys/guarded").status_code == 401
