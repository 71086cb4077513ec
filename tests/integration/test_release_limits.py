"""Release limits end to end: a broker over real HTTP, PostgreSQL and SoftHSM.

Each synthetic AMD kit is one chip (its own chip id and VCEK), so ``kit-a`` and ``kit-b`` are
two instances. The counters are checked where they live (``release_counts``,
``instance_release_counts``) and against the audit log, which must hold one ``allow`` record
per counted release and a ``deny`` record naming the limit for every refusal.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.guest.client import GuestClient, GuestError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.simulate.guests import SimulatedSnp
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    denied,
    fetch,
    running_deployment,
    save_snp_kit,
    seed,
    snp_policy,
)

pytestmark = pytest.mark.integration

SECRET = b"k" * 32
PARALLEL = 50


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits")


@pytest.fixture(scope="module")
def kits(deployment_dir: Path) -> dict[str, Path]:
    return {name: save_snp_kit(deployment_dir, name) for name in ("kit-a", "kit-b")}


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, kits: dict[str, Path], cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    roots = (deployment_dir / "kit-a.pem", deployment_dir / "kit-b.pem")
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        yield running


def _source(deployment: Deployment, kit: str = "kit-a", **options: Any) -> SimulatedSnp:
    return SimulatedSnp(deployment.kits[kit], measurement=GOOD_MEASUREMENT, **options)


def _limited(name: str, limits: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """A policy admitting both kits' good guests, with ``limits``."""
    document = snp_policy(name, "insecure-test-kit-a", version=version)
    document["admit"]["snp"]["signer"]["roots"].append("insecure-test-kit-b")
    document["limits"] = limits
    return document


async def _decisions(deployment: Deployment, key: str) -> Counter[str]:
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT decision FROM audit_log WHERE kind = 'release' AND key_name = $1", key
        )
    return Counter(row["decision"] for row in rows)


async def _counted(deployment: Deployment, key: str) -> int | None:
    async with deployment.db.connection() as conn:
        value: int | None = await conn.fetchval(
            "SELECT releases FROM release_counts WHERE key_name = $1", key
        )
    return value


def _limit_rule(error: GuestError) -> tuple[int | None, tuple[str, ...]]:
    return error.status, tuple(reason["rule"] for reason in error.problem["reasons"])


async def _race(deployment: Deployment, key: str) -> tuple[list[bytes], list[GuestError]]:
    """:data:`PARALLEL` releases of ``key`` at once, on one token: the secrets released and
    the refusals."""
    private_key = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base, timeout=120) as http:
        guest = GuestClient(http)
        token = await guest.attest(_source(deployment), private_key)
        broker_key = await guest.broker_key()
        outcomes = await asyncio.gather(
            *(guest.release(key, token, private_key, broker_key) for _ in range(PARALLEL)),
            return_exceptions=True,
        )
    released = [o.secret for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, GuestError)]
    assert len(released) + len(refused) == PARALLEL, outcomes
    return released, refused


async def test_fifty_parallel_releases_of_a_max_releases_1_key_release_it_once(
    deployment: Deployment,
) -> None:
    seed(deployment, "once-key", SECRET, _limited("once-policy", {"max_releases": 1}))
    released, refused = await _race(deployment, "once-key")
    assert released == [SECRET]
    assert len(refused) == PARALLEL - 1
    for error in refused:
        assert _limit_rule(error) == (403, ("$.limits.max_releases",))
        assert error.problem["type"].endswith("/policy-denied")
        assert "releases < 1, found 1" in error.problem["detail"]
    assert await _decisions(deployment, "once-key") == Counter({"allow": 1, "deny": PARALLEL - 1})
    assert await _counted(deployment, "once-key") == 1


async def test_fifty_parallel_releases_on_existing_counters_release_once_more(
    deployment: Deployment,
) -> None:
    """The counter row exists already, so only its row lock orders the racers (on a new key
    the insert that creates the row also makes them wait)."""
    seed(deployment, "twice-key", SECRET, _limited("twice-policy", {"max_releases": 2}))
    assert await fetch(deployment, "twice-key", _source(deployment)) == SECRET
    released, refused = await _race(deployment, "twice-key")
    assert released == [SECRET]
    assert {_limit_rule(error) for error in refused} == {(403, ("$.limits.max_releases",))}
    assert await _decisions(deployment, "twice-key") == Counter({"allow": 2, "deny": PARALLEL - 1})
    assert await _counted(deployment, "twice-key") == 2


async def test_fifty_parallel_one_request_releases_of_a_max_releases_1_key_release_it_once(
    deployment: Deployment,
) -> None:
    """The one-request flow takes the limits in the statement that consumes each guest's
    nonce: one release, and 49 denials each committed with its own nonce."""
    seed(deployment, "once-direct", SECRET, _limited("once-direct", {"max_releases": 1}))
    private_key = rsa.generate_private_key(65537, 3072)
    path = "/v1/keys/once-direct/release"
    async with httpx.AsyncClient(base_url=deployment.base, timeout=120) as http:
        guest = GuestClient(http)
        bodies = [
            await guest.attestation(_source(deployment), private_key) for _ in range(PARALLEL)
        ]
        answers = await asyncio.gather(*(http.post(path, json=body) for body in bodies))
        assert Counter(a.status_code for a in answers) == Counter({200: 1, 403: PARALLEL - 1})
        for answer in answers:
            if answer.status_code == 403:
                reasons = [reason["rule"] for reason in answer.json()["reasons"]]
                assert reasons == ["$.limits.max_releases"], answer.text
        (released,) = (body for body, a in zip(bodies, answers, strict=True) if a.is_success)
        replay = await http.post(path, json=released)
        assert (replay.status_code, replay.json()["type"].rsplit("/", 1)[1]) == (
            409,
            "nonce-replayed",
        )
    assert await _decisions(deployment, "once-direct") == Counter(
        {"allow": 1, "deny": PARALLEL}  # the 49 the limit refused, and the replay
    )
    assert await _counted(deployment, "once-direct") == 1
    nonces = [base64.b64decode(body["nonce"]) for body in bodies]
    async with deployment.db.connection() as conn:
        consumed = await conn.fetchval(
            "SELECT count(*) FROM challenges WHERE nonce = ANY($1::bytea[])", nonces
        )
        flows = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE key_name = 'once-direct' "
            "AND record::jsonb ->> 'flow' = 'one-request'"
        )
    assert consumed == PARALLEL  # each by the one record of its release or denial
    assert flows == PARALLEL + 1


async def test_a_denied_release_counts_nothing(deployment: Deployment) -> None:
    seed(deployment, "deny-first", SECRET, _limited("deny-first-policy", {"max_releases": 1}))
    other = SimulatedSnp(deployment.kits["kit-a"], measurement=b"\x01" * 48)
    error = await denied(deployment, "deny-first", other)
    assert _limit_rule(error)[1] == ("$.admit.snp.reference_values",)
    assert await _counted(deployment, "deny-first") is None
    assert await fetch(deployment, "deny-first", _source(deployment)) == SECRET
    error = await denied(deployment, "deny-first", _source(deployment))
    assert _limit_rule(error) == (403, ("$.limits.max_releases",))
    assert await _counted(deployment, "deny-first") == 1


async def test_pin_to_first_instance_refuses_every_other_chip(deployment: Deployment) -> None:
    seed(deployment, "pinned", SECRET, _limited("pin-policy", {"pin_to_first_instance": True}))
    assert await fetch(deployment, "pinned", _source(deployment, "kit-a")) == SECRET
    error = await denied(deployment, "pinned", _source(deployment, "kit-b"))
    assert _limit_rule(error) == (403, ("$.limits.pin_to_first_instance",))
    (reason,) = error.problem["reasons"]
    assert reason["expected"].startswith("snp:chip_id:")
    assert reason["found"].startswith("snp:chip_id:")
    assert reason["expected"] != reason["found"]
    assert await fetch(deployment, "pinned", _source(deployment, "kit-a")) == SECRET
    assert await _decisions(deployment, "pinned") == Counter({"allow": 2, "deny": 1})


async def test_once_per_instance_releases_once_to_each_chip(deployment: Deployment) -> None:
    seed(deployment, "each-once", SECRET, _limited("each-once", {"once_per_instance": True}))
    assert await fetch(deployment, "each-once", _source(deployment, "kit-a")) == SECRET
    error = await denied(deployment, "each-once", _source(deployment, "kit-a"))
    assert _limit_rule(error) == (403, ("$.limits.once_per_instance",))
    assert await fetch(deployment, "each-once", _source(deployment, "kit-b")) == SECRET
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT releases FROM instance_release_counts WHERE key_name = 'each-once'"
        )
    assert sorted(row["releases"] for row in rows) == [1, 1]


async def test_rate_per_instance_says_when_the_next_release_is_allowed(
    deployment: Deployment,
) -> None:
    limits = {"rate_per_instance": {"releases": 2, "per": "1h"}, "reason": "two boots an hour"}
    seed(deployment, "rated", SECRET, _limited("rate-policy", limits))
    for _ in range(2):
        assert await fetch(deployment, "rated", _source(deployment, "kit-a")) == SECRET
    error = await denied(deployment, "rated", _source(deployment, "kit-a"))
    assert _limit_rule(error) == (403, ("$.limits.rate_per_instance",))
    (reason,) = error.problem["reasons"]
    assert (reason["expected"], reason["found"], reason["reason"]) == (2, 2, "two boots an hour")
    assert "the next is allowed from" in reason["note"]
    # Another chip has its own window.
    assert await fetch(deployment, "rated", _source(deployment, "kit-b")) == SECRET


async def test_counts_survive_a_new_policy_version(deployment: Deployment) -> None:
    seed(deployment, "versioned", SECRET, _limited("versioned-policy", {"max_releases": 2}))
    assert await fetch(deployment, "versioned", _source(deployment)) == SECRET
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        document = _limited("versioned-policy", {"max_releases": 1}, version=2)
        assert author.post("/v1/admin/policies", json={"document": document}).status_code == 201
    # The key follows the newest version, whose limit the one counted release already meets.
    error = await denied(deployment, "versioned", _source(deployment))
    assert _limit_rule(error) == (403, ("$.limits.max_releases",))
    assert "versioned-policy v2" in error.problem["detail"]
