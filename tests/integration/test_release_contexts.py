"""Release contexts remembered per worker, end to end: one statement per steady-state release,
and every change to a key, its binding or its policy honoured by the next release.

Two brokers serve the module, each with its own PostgreSQL cluster that loads
pg_stat_statements, so the statements a release runs are counted by the server itself: one
with the default ``release_context_cache_size``, one with 0 (the path without the cache).
Changes that must land between a release's decision and its audit append are made from
inside the broker's seal step (:class:`SealHook`), through the admin API.
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.guest.client import GuestClient, GuestError, Released
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.release.service import STALE_ATTEMPTS, ReleaseService
from broker.roles import Role
from broker.simulate.guests import SimulatedSnp
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    last_audit,
    running_deployment,
    save_snp_kit,
    seed,
    snp_policy,
    statements_during,
)

pytestmark = pytest.mark.integration

ROOT = "insecure-test-kit-a"
# What one release runs: with a remembered context, the conditional append alone; on a
# fresh read, the read and then the conditional append; without the cache, as before.
CACHED = Counter({"audit_release_if_current": 1})
READ_THEN_CACHED = Counter({"release_context": 1, "audit_release_if_current": 1})
UNCACHED = Counter({"release_context": 1, "audit_append": 1})


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("contexts")
    save_snp_kit(directory, "kit-a")
    for name in ("cached", "uncached"):
        (directory / name).mkdir()
    return directory


@asynccontextmanager
async def _deployment(
    directory: Path, softhsm: LocalSoftHsm, **overrides: Any
) -> AsyncIterator[Deployment]:
    kits = {"kit-a": directory.parent / "kit-a"}
    roots = (directory.parent / "kit-a.pem",)
    async with running_deployment(
        directory, softhsm, roots, kits, stat_statements=True, **overrides
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def cached(
    deployment_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with _deployment(deployment_dir / "cached", softhsm) as running:
        yield running


@pytest.fixture(scope="module")
async def uncached(
    deployment_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with _deployment(
        deployment_dir / "uncached", softhsm, release_context_cache_size=0
    ) as running:
        yield running


# --- a guest that keeps its token ----------------------------------------------------------


@dataclass
class Guest:
    """A guest holding an attestation token, which it may present for several releases."""

    deployment: Deployment
    http: httpx.AsyncClient
    owner: rsa.RSAPrivateKey
    token: str
    broker_key: ec.EllipticCurvePublicKey

    async def release(self, key: str) -> Released | GuestError:
        try:
            return await GuestClient(self.http).release(
                key, self.token, self.owner, self.broker_key
            )
        except GuestError as refused:
            return refused

    async def counted_release(self, key: str) -> tuple[Released | GuestError, Counter[str]]:
        """The release and the statements PostgreSQL ran for it."""
        return await statements_during(self.deployment, lambda: self.release(key))


@asynccontextmanager
async def attested(deployment: Deployment) -> AsyncIterator[Guest]:
    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        client = GuestClient(http)
        source = SimulatedSnp(deployment.kits["kit-a"], measurement=GOOD_MEASUREMENT)
        token = await client.attest(source, owner)
        yield Guest(deployment, http, owner, token, await client.broker_key())


def released(outcome: Released | GuestError) -> Released:
    if isinstance(outcome, GuestError):
        pytest.fail(f"refused: {outcome.status} {outcome.problem}")
    return outcome


def refused(outcome: Released | GuestError) -> GuestError:
    if not isinstance(outcome, GuestError):
        pytest.fail(f"released {outcome!r}")
    return outcome


# --- admin actions -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def add_version(deployment: Deployment, key: str, secret: bytes) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        added = custodian.post(f"/v1/admin/keys/{key}/versions", json={"secret": _b64(secret)})
        assert added.status_code == 201, added.text


def publish_and_bind(deployment: Deployment, key: str, policy: dict[str, Any]) -> None:
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        published = author.post("/v1/admin/policies", json={"document": policy})
        assert published.status_code == 201, published.text
        bound = author.put(f"/v1/admin/keys/{key}/policy", json={"policy": policy["name"]})
        assert bound.status_code == 200, bound.text


async def admin_post(deployment: Deployment, role: Role, path: str, body: Any = None) -> None:
    """An admin request from inside the broker's event loop (a blocking client would stall
    the loop that must serve it)."""
    headers = {"Authorization": f"Bearer {deployment.tokens[role]}"}
    async with httpx.AsyncClient(base_url=deployment.base, headers=headers) as admin:
        answer = await admin.post(path, json=body)
    assert answer.status_code in (200, 201), answer.text


# --- a change between the decision and the append ------------------------------------------


class SealHook:
    """Stands in for the release service's custody: each time the service seals an envelope
    (after its policy decision, before its audit append), ``hook`` runs first, in the
    broker's event loop, with the number of seals so far."""

    def __init__(self, custody: Any, hook: Callable[[int], Awaitable[None]]) -> None:
        self._custody = custody
        self._hook = hook
        self.seals = 0
        self.pool = self  # the service seals through ``custody.pool.run``

    def __getattr__(self, name: str) -> Any:
        return getattr(self._custody, name)

    async def run(self, work: Callable[[Any], Any]) -> Any:
        self.seals += 1
        await self._hook(self.seals)
        return await self._custody.pool.run(work)


@contextmanager
def hooked(deployment: Deployment, hook: Callable[[int], Awaitable[None]]) -> Iterator[SealHook]:
    service: ReleaseService = deployment.app.state.release
    original = service.custody
    stand_in = SealHook(original, hook)
    service.custody = stand_in
    try:
        yield stand_in
    finally:
        service.custody = original


async def release_records(deployment: Deployment, token_id: str) -> list[dict[str, Any]]:
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT decision, record::jsonb ->> 'key' AS key FROM audit_log"
            " WHERE kind = 'release' AND record::jsonb ->> 'token_id' = $1 ORDER BY seq",
            token_id,
        )
    return [dict(row) for row in rows]


# --- steady state ----------------------------------------------------------------------------


async def test_a_repeated_release_runs_one_statement(cached: Deployment) -> None:
    secret = os.urandom(32)
    seed(cached, "steady", secret, snp_policy("steady-policy", ROOT))
    async with attested(cached) as guest:
        first, ran_first = await guest.counted_release("steady")
        second, ran_second = await guest.counted_release("steady")
        third, ran_third = await guest.counted_release("steady")
    assert released(first).secret == released(second).secret == released(third).secret == secret
    # The first release also reads the policy's document, which the worker then keeps
    # compiled (by digest).
    assert ran_first == READ_THEN_CACHED + Counter({"policy_version": 1})
    assert ran_second == ran_third == CACHED
    record = await last_audit(cached, "release")
    assert (record["decision"], record["key"]) == ("allow", {"name": "steady", "version": 1})


async def test_an_unknown_key_is_read_every_time_and_never_remembered(cached: Deployment) -> None:
    async with attested(cached) as guest:
        for _ in range(2):
            outcome, ran = await guest.counted_release("never-created")
            assert refused(outcome).status == 404
            assert ran == UNCACHED  # read, then the unconditional append of the refusal
    service: ReleaseService = cached.app.state.release
    assert service.contexts.get("never-created") is None
    record = await last_audit(cached, "release")
    assert (record["decision"], record["error"]["type"]) == ("deny", "key-not-found")


# --- changes between two releases ------------------------------------------------------------


async def test_disabling_a_key_is_honoured_by_the_next_release(cached: Deployment) -> None:
    seed(cached, "to-disable", os.urandom(32), snp_policy("to-disable-policy", ROOT))
    async with attested(cached) as guest:
        released(await guest.release("to-disable"))
        with admin_client(cached, Role.KEY_CUSTODIAN) as custodian:
            assert custodian.post("/v1/admin/keys/to-disable/disable").status_code == 200
        outcome, ran = await guest.counted_release("to-disable")
        error = refused(outcome)
        assert (error.status, error.problem["type"].split("/")[-1]) == (403, "key-disabled")
        # The remembered (active) context failed its check; the fresh read decided.
        assert ran == Counter({"audit_release_if_current": 2, "release_context": 1})
        record = await last_audit(cached, "release")
        assert (record["decision"], record["error"]["type"]) == ("deny", "key-disabled")
        assert record["key"] == {"name": "to-disable", "version": 1}
        # A denial on a remembered context is checked the same way, and re-enabling the key
        # is honoured as promptly.
        outcome, ran = await guest.counted_release("to-disable")
        assert refused(outcome).status == 403
        assert ran == CACHED
        with admin_client(cached, Role.KEY_CUSTODIAN) as custodian:
            assert custodian.post("/v1/admin/keys/to-disable/enable").status_code == 200
        released(await guest.release("to-disable"))


async def test_a_new_key_version_is_released_by_the_next_release(cached: Deployment) -> None:
    old, new = os.urandom(32), os.urandom(48)
    seed(cached, "to-rotate", old, snp_policy("to-rotate-policy", ROOT))
    async with attested(cached) as guest:
        assert released(await guest.release("to-rotate")).secret == old
        add_version(cached, "to-rotate", new)
        after = released(await guest.release("to-rotate"))
        assert (after.version, after.secret) == (2, new)
        record = await last_audit(cached, "release")
        assert (record["decision"], record["key"]) == ("allow", {"name": "to-rotate", "version": 2})


async def test_rebinding_to_a_denying_policy_is_honoured(cached: Deployment) -> None:
    seed(cached, "to-rebind", os.urandom(32), snp_policy("to-rebind-allows", ROOT))
    async with attested(cached) as guest:
        released(await guest.release("to-rebind"))
        # The synthetic kit's TCB SNP level is below 99.
        publish_and_bind(cached, "to-rebind", snp_policy("to-rebind-denies", ROOT, 99))
        error = refused(await guest.release("to-rebind"))
    assert (error.status, error.problem["type"].split("/")[-1]) == (403, "policy-denied")
    record = await last_audit(cached, "release")
    assert record["decision"] == "deny"
    assert (record["policy"]["name"], record["policy"]["version"]) == ("to-rebind-denies", 1)


async def test_a_new_policy_version_decides_a_key_bound_to_the_latest(cached: Deployment) -> None:
    seed(cached, "follows", os.urandom(32), snp_policy("follows-policy", ROOT))
    async with attested(cached) as guest:
        released(await guest.release("follows"))
        with admin_client(cached, Role.POLICY_AUTHOR) as author:
            stricter = snp_policy("follows-policy", ROOT, 99, version=2)
            assert author.post("/v1/admin/policies", json={"document": stricter}).status_code == 201
        error = refused(await guest.release("follows"))
    assert error.status == 403
    assert any("minimum_tcb" in reason["rule"] for reason in error.problem["reasons"])
    record = await last_audit(cached, "release")
    assert (record["decision"], record["policy"]["version"]) == ("deny", 2)


async def test_a_blob_changed_behind_the_broker_is_noticed(cached: Deployment) -> None:
    seed(cached, "re-blobbed", os.urandom(32), snp_policy("re-blobbed-policy", ROOT))
    async with attested(cached) as guest:
        released(await guest.release("re-blobbed"))
        async with cached.db.connection() as conn:
            await conn.execute(
                "UPDATE keys SET wrapped_blob ="
                " set_byte(wrapped_blob, 3, get_byte(wrapped_blob, 3) # 1)"
                " WHERE name = 're-blobbed'"
            )
        error = refused(await guest.release("re-blobbed"))
    assert (error.status, error.problem["type"].split("/")[-1]) == (500, "blob-invalid")
    record = await last_audit(cached, "release")
    assert (record["decision"], record["error"]["type"]) == ("error", "blob-invalid")


# --- changes between the decision and the append --------------------------------------------


async def test_a_version_added_during_a_release_is_the_one_released(cached: Deployment) -> None:
    old, new = os.urandom(32), os.urandom(32)
    seed(cached, "mid-rotate", old, snp_policy("mid-rotate-policy", ROOT))

    async def rotate_once(seal: int) -> None:
        if seal == 1:
            path = "/v1/admin/keys/mid-rotate/versions"
            await admin_post(cached, Role.KEY_CUSTODIAN, path, {"secret": _b64(new)})

    async with attested(cached) as guest:
        released(await guest.release("mid-rotate"))  # remembered: version 1
        with hooked(cached, rotate_once) as hook:
            after = released(await guest.release("mid-rotate"))
        assert hook.seals == 2  # version 1 sealed and dropped, then version 2
    assert (after.version, after.secret) == (2, new)
    record = await last_audit(cached, "release")
    assert (record["decision"], record["key"]["version"]) == ("allow", 2)
    # The dropped decision left no record: one per release the guest made.
    assert [row["decision"] for row in await release_records(cached, record["token_id"])] == [
        "allow",
        "allow",
    ]


async def test_a_key_disabled_during_a_release_is_not_released(cached: Deployment) -> None:
    seed(cached, "mid-disable", os.urandom(32), snp_policy("mid-disable-policy", ROOT))

    async def disable_once(seal: int) -> None:
        if seal == 1:
            await admin_post(cached, Role.KEY_CUSTODIAN, "/v1/admin/keys/mid-disable/disable")

    async with attested(cached) as guest:
        with hooked(cached, disable_once) as hook:
            error = refused(await guest.release("mid-disable"))  # a fresh read, then cached
        assert hook.seals == 1  # the second decision is a denial: nothing to seal
    assert (error.status, error.problem["type"].split("/")[-1]) == (403, "key-disabled")
    record = await last_audit(cached, "release")
    assert (record["decision"], record["error"]["type"]) == ("deny", "key-disabled")
    assert "envelope_sha256" not in record
    assert [row["decision"] for row in await release_records(cached, record["token_id"])] == [
        "deny"
    ]


async def test_a_key_that_keeps_changing_is_a_503_audited_as_an_error(cached: Deployment) -> None:
    seed(cached, "restless", os.urandom(32), snp_policy("restless-policy", ROOT))
    last_secret = os.urandom(32)

    async def rotate_always(seal: int) -> None:
        secret = last_secret if seal == STALE_ATTEMPTS else os.urandom(32)
        await admin_post(
            cached, Role.KEY_CUSTODIAN, "/v1/admin/keys/restless/versions", {"secret": _b64(secret)}
        )

    async with attested(cached) as guest:
        with hooked(cached, rotate_always) as hook:
            error = refused(await guest.release("restless"))
        assert hook.seals == STALE_ATTEMPTS
        assert (error.status, error.problem["type"].split("/")[-1]) == (503, "unavailable")
        record = await last_audit(cached, "release")
        assert (record["decision"], record["error"]["type"]) == ("error", "unavailable")
        assert f"each of {STALE_ATTEMPTS} attempts" in record["error"]["detail"]
        assert "key" not in record  # nothing was decided
        assert "envelope_sha256" not in record
        # Once the key stops changing, its newest version is released.
        after = released(await guest.release("restless"))
    assert (after.version, after.secret) == (1 + STALE_ATTEMPTS, last_secret)


# --- without the cache -------------------------------------------------------------------------


async def test_cache_size_zero_reads_the_context_for_every_release(uncached: Deployment) -> None:
    secret = os.urandom(32)
    seed(uncached, "plain", secret, snp_policy("plain-policy", ROOT))
    async with attested(uncached) as guest:
        assert released(await guest.release("plain")).secret == secret  # policy now compiled
        for _ in range(2):
            outcome, ran = await guest.counted_release("plain")
            assert released(outcome).secret == secret
            assert ran == UNCACHED
        with admin_client(uncached, Role.KEY_CUSTODIAN) as custodian:
            assert custodian.post("/v1/admin/keys/plain/disable").status_code == 200
        outcome, ran = await guest.counted_release("plain")
        assert refused(outcome).status == 403
        assert ran == UNCACHED
    service: ReleaseService = uncached.app.state.release
    assert (service.contexts.capacity, len(service.contexts)) == (0, 0)


_PER_REQUEST = {"at", "request_id", "token_id", "evidence_sha256", "tee_pubkey_thumbprint"}


async def test_records_are_the_same_with_and_without_the_cache(
    cached: Deployment, uncached: Deployment
) -> None:
    """A release record's content does not depend on the cache (beyond per-request values)."""
    records = []
    for deployment in (cached, uncached):
        seed(deployment, "same-record", os.urandom(32), snp_policy("same-record-policy", ROOT))
        async with attested(deployment) as guest:
            for _ in range(2):  # the second from the remembered context, where there is one
                released(await guest.release("same-record"))
        record = await last_audit(deployment, "release")
        assert len(record["envelope_sha256"]) == 64
        records.append(
            {k: v for k, v in record.items() if k not in _PER_REQUEST | {"envelope_sha256"}}
        )
    assert records[0] == records[1]
    assert records[0]["key"] == {"name": "same-record", "version": 1}
