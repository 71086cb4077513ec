"""The audit trail over the admin API: parsed records, filters, pagination by sequence
number, and a chain check from a point in time (PostgreSQL, SoftHSM, a real broker)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.simulate.guests import SimulatedSnp
from tests.integration.release_support import (
    Deployment,
    admin_client,
    denied,
    one_kit_deployment,
    seed,
    snp_policy,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("audit"), softhsm) as running:
        seed(
            running, "audited", os.urandom(32), snp_policy("audited-policy", "insecure-test-kit-a")
        )
        source = SimulatedSnp(running.kits["kit-a"], measurement=b"\x00" * 48)  # not approved
        await denied(running, "audited", source)
        with admin_client(running, Role.KEY_CUSTODIAN) as custodian:
            for index in range(5):
                custodian.post(
                    "/v1/admin/keys", json={"name": f"other-{index}", "generate_length": 8}
                )
        yield running


def _get(deployment: Deployment, path: str, **params: Any) -> Any:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        answer = auditor.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_records_are_parsed_json_with_their_chain_hash(deployment: Deployment) -> None:
    page = _get(deployment, "/v1/admin/audit", limit=3)
    assert page["next"] is None  # newest first: no cursor
    records = page["records"]
    assert [r["seq"] for r in records] == sorted((r["seq"] for r in records), reverse=True)
    for entry in records:
        assert isinstance(entry["record"], dict)
        assert entry["record"]["kind"] == entry["kind"]
        assert len(entry["hash"]) == 64


def test_filters_pick_the_records_they_name(deployment: Deployment) -> None:
    released = _get(deployment, "/v1/admin/audit", key="audited", kind="release")["records"]
    assert [r["decision"] for r in released] == ["deny"]
    denial = released[0]
    assert denial["record"]["error"]["type"] == "policy-denied"
    by_request = _get(deployment, "/v1/admin/audit", request_id=denial["request_id"])["records"]
    assert [r["seq"] for r in by_request] == [denial["seq"]]
    denies = _get(deployment, "/v1/admin/audit", outcome="deny")["records"]
    assert denial["seq"] in [r["seq"] for r in denies]
    assert {r["decision"] for r in denies} == {"deny"}

    created = _get(deployment, "/v1/admin/audit", kind="admin", key="other-3")["records"]
    assert [r["record"]["action"] for r in created] == ["key.create"]
    actor = created[0]["record"]["actor"]
    by_actor = _get(deployment, "/v1/admin/audit", actor=actor, kind="admin")["records"]
    assert {r["record"]["actor"] for r in by_actor} == {actor}
    assert len(by_actor) >= 5

    at = created[0]["at"]
    since = _get(deployment, "/v1/admin/audit", since=at, kind="admin", after=0)["records"]
    until = _get(deployment, "/v1/admin/audit", until=at, kind="admin", after=0)["records"]
    assert since[0]["seq"] <= created[0]["seq"]
    assert all(r["seq"] < created[0]["seq"] for r in until)
    assert {r["seq"] for r in since} | {r["seq"] for r in until} >= {
        r["seq"] for r in _get(deployment, "/v1/admin/audit", kind="admin", after=0)["records"]
    }
    assert _get(deployment, "/v1/admin/audit", key="no-such-key")["records"] == []


def test_pages_follow_the_sequence_to_the_end(deployment: Deployment) -> None:
    everything = _get(deployment, "/v1/admin/audit", after=0, limit=1000)["records"]
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page = _get(deployment, "/v1/admin/audit", after=after, limit=4)
        seen += [r["seq"] for r in page["records"]]
        after = page["next"]
    assert seen == [r["seq"] for r in everything]
    assert seen == list(range(1, len(seen) + 1))
    middle = _get(deployment, "/v1/admin/audit", after=2, before=6, limit=100)["records"]
    assert [r["seq"] for r in middle] == [3, 4, 5]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"outcome": "maybe"}, "query parameter outcome is not one of allow, deny, error, ok"),
        ({"since": "yesterday"}, "query parameter since must be an RFC 3339 date-time, or unix"),
        ({"until": "2026-01-01T00:00:00"}, "query parameter until must be an RFC 3339 date-time"),
        ({"since": "1.5"}, "query parameter since must be an RFC 3339 date-time"),
        ({"actor": "a\x00b"}, "query parameter actor is not 1 to 256 printable ASCII characters"),
        ({"request_id": "XYZ"}, "query parameter request_id is not 16 lowercase hex digits"),
        ({"kind": "Release"}, "query parameter kind is not a record kind"),
        ({"after": str(2**63)}, f"query parameter after must be at most {2**63 - 1}"),
        ({"key": "K"}, "key name 'K' is not allowed"),
        ({"after": "-1"}, "query parameter after must be a non-negative integer"),
    ],
)
def test_bad_filters_are_400(deployment: Deployment, params: dict[str, str], detail: str) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        answer = auditor.get("/v1/admin/audit", params=params)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(detail)


async def test_zz_verify_since_checks_the_range_only(deployment: Deployment) -> None:
    everything = _get(deployment, "/v1/admin/audit", after=0, limit=1000)["records"]
    late = everything[-3]
    whole = _get(deployment, "/v1/admin/audit/verify")
    ranged = _get(deployment, "/v1/admin/audit/verify", since=late["at"])
    assert whole["ok"] is True
    assert ranged["ok"] is True
    assert ranged["records"] <= 3 < whole["records"]
    assert _get(deployment, "/v1/admin/audit/verify", since="2999-01-01T00:00:00Z") == {
        "ok": True,
        "records": 0,
        "first_bad_seq": None,
        "reason": None,
    }
    async with deployment.db.transaction() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            "UPDATE audit_log SET record = record || ' ' WHERE seq = $1",
            everything[2]["seq"],
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    # A change before the range is not seen from it; the whole chain shows it.
    assert _get(deployment, "/v1/admin/audit/verify", since=late["at"])["ok"] is True
    broken = _get(deployment, "/v1/admin/audit/verify", since=everything[0]["at"])
    assert broken["ok"] is False
    assert broken["first_bad_seq"] == everything[2]["seq"]
