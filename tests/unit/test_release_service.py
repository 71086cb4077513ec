"""The release orchestrator's decisions about its store, with the store in memory.

The service is the real one, driven through the real guest endpoints as the glue benchmark
builds them (evidence verified once beforehand, an HSM stand-in that signs with fixed
bytes), over ``tests/fakes/release_store.py``: what it appends, when, and what it refuses,
without PostgreSQL. The same rules against PostgreSQL are the integration tests'
(``tests/integration/test_release_contexts.py``, ``test_release_flow.py``).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker import jose
from broker.api import guest
from broker.bench.scenarios import SNP
from broker.errors import (
    BadRequest,
    BindingMismatch,
    DatabaseUnavailable,
    KeybrokerError,
    KeyDisabled,
    KeyNotFound,
    NonceExpired,
    NonceReplayed,
    NonceUnknown,
    PolicyDenied,
    TokenInvalid,
    TokenMissing,
    Unavailable,
)
from broker.guest.client import tee_jwk
from broker.lru import Lru
from broker.policy.limits import Counters
from broker.policy.loader import load_policy_text
from broker.release.contextcache import ContextCache
from broker.release.nonces import VERSION, decode
from broker.release.origin import Origin
from broker.release.policies import stored_form
from broker.release.service import ATTEST_ENDPOINT, RELEASE_ENDPOINT, STALE_ATTEMPTS, AttestRequest
from broker.store.audit import AuditRecord
from broker.store.contexts import BoundPolicy, ReleaseContext
from broker.store.release import PostgresReleaseStore, ReleaseStore
from broker.timeutil import utcnow
from tests.fakes import glue
from tests.fakes.release_store import MemoryReleaseStore

T = TypeVar("T")


@pytest.fixture(scope="module")
def material() -> glue.Material:
    return glue.Material.generate(chain_rsa_bits=2048)


@dataclass
class Setup:
    case: glue.GlueCase
    store: MemoryReleaseStore
    context: ReleaseContext
    seals: list[object]
    verified: list[object]

    @property
    def service(self) -> glue.GlueService:
        return self.case.service


def _setup(material: glue.Material, store: MemoryReleaseStore | None = None) -> Setup:
    case = glue.build_case(material)
    context = ReleaseContext.of(case.db.context)  # the key and its bound policy, compiled
    store = store if store is not None else MemoryReleaseStore()
    store.contexts[context.name] = context
    service = case.service
    service.store = store
    seals: list[object] = []
    seal = service.custody.release_to_sync
    service.custody.release_to_sync = lambda *args: seals.append(args) or seal(*args)  # type: ignore[method-assign]
    verified: list[object] = []
    verify = service._verify

    async def counted(request: AttestRequest, now: datetime) -> Any:
        verified.append(request)
        return await verify(request, now)

    service._verify = counted  # type: ignore[method-assign]
    return Setup(case, store, context, seals, verified)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def _attest(setup: Setup) -> str:
    _, answer = await guest.attest(glue.request(setup.case.attest_body), setup.case.state)
    token: str = answer["token"]
    return token


RELEASE_ORIGIN = Origin("req-release")


async def _release(
    setup: Setup,
    token: str,
    key_name: str = glue.KEY_NAME,
    presented: dict[str, str] | None = None,
    origin: Origin = RELEASE_ORIGIN,
) -> dict[str, Any]:
    return await setup.service.release(token, key_name, presented, origin)


def _error(record: AuditRecord) -> str:
    return str(record.body["error"]["type"])


def _refused(coroutine: Coroutine[Any, Any, object], error: type[KeybrokerError]) -> None:
    with pytest.raises(error):
        _run(coroutine)


# --- the store's contract ----------------------------------------------------------------------


def test_the_fakes_and_the_postgresql_store_have_the_protocols_methods() -> None:
    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if inspect.iscoroutinefunction(member) and not name.startswith("_")
        }

    wanted = methods(ReleaseStore)
    assert set(wanted) == {
        "consume_nonce_and_append",
        "consume_nonce_and_append_if_current",
        "append",
        "context",
        "append_if_current",
        "append_within_limits",
        "key_at_path",
        "policy_document",
    }
    assert methods(MemoryReleaseStore) == wanted
    assert methods(PostgresReleaseStore) == wanted


# --- attest ------------------------------------------------------------------------------------


def test_an_attestation_consumes_its_nonce_with_its_record(material: glue.Material) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    (record,) = setup.store.log
    assert (record.kind, record.decision) == ("attest", "allow")
    public = setup.service.custody.signing_public_key
    assert record.body["token_id"] == setup.service.issued.read(token, public, record.at).token_id
    assert setup.store.consumed == {decode(setup.case.nonce_text): "snp"}
    assert setup.store.calls == Counter({"consume_nonce_and_append": 1})


def test_a_nonce_another_worker_consumed_is_refused_as_a_replay_and_audited(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.store.consumed[decode(setup.case.nonce_text)] = "snp"  # consumed elsewhere
    _refused(_attest(setup), NonceReplayed)
    (record,) = setup.store.log
    assert (record.kind, record.decision, _error(record)) == ("attest", "deny", "nonce-replayed")
    assert "token_id" not in record.body  # a token was signed, but it never leaves
    assert setup.store.calls == Counter({"consume_nonce_and_append": 1, "append": 1})
    assert len(setup.verified) == 1  # only the database could tell: after the verification


def test_a_replay_to_the_same_worker_is_refused_before_its_evidence_is_verified(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.service.consumed = Lru(16)
    _run(_attest(setup))
    _refused(_attest(setup), NonceReplayed)
    assert len(setup.verified) == 1
    first, second = setup.store.log
    assert first.decision == "allow"
    assert (second.decision, _error(second)) == ("deny", "nonce-replayed")
    # The refusal consumed nothing: one consumption, then an unconditional append.
    assert setup.store.calls == Counter({"consume_nonce_and_append": 1, "append": 1})


# --- one-request release -----------------------------------------------------------------------


async def _attested_release(setup: Setup, body: bytes | None = None) -> dict[str, Any]:
    """The release with the attestation in its body (no token), through the guest endpoint."""
    lean = glue.request(body or setup.case.attest_body, {"name": glue.KEY_NAME})
    _, answer = await guest.release(lean, setup.case.state)
    released: dict[str, Any] = answer
    return released


def test_a_one_request_release_is_one_record_appended_with_its_nonce(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    answer = _run(_attested_release(setup))
    (record,) = setup.store.log
    assert (record.kind, record.decision, record.key_name) == ("release", "allow", glue.KEY_NAME)
    body = record.body
    assert body["flow"] == "one-request"
    assert body["envelope_sha256"] == answer["envelope_sha256"]
    assert body["key"] == {"name": glue.KEY_NAME, "version": 1}
    assert body["claims"]["tee"] == "snp"  # the attestation's part, in the same record
    assert body["binding"]
    assert body["signer"]
    assert "token_id" not in body  # no token was issued
    assert setup.store.consumed == {decode(setup.case.nonce_text): "snp"}
    # The context read once, then one statement: nonce consumed, context checked, appended.
    assert setup.store.calls == Counter({"context": 1, "consume_nonce_and_append_if_current": 1})
    assert len(setup.seals) == 1


def test_a_one_request_release_with_a_nonce_consumed_elsewhere_is_a_replay(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.store.consumed[decode(setup.case.nonce_text)] = "snp"  # consumed by another replica
    with pytest.raises(NonceReplayed, match=r"^nonce was already used$"):
        _run(_attested_release(setup))
    (record,) = setup.store.log
    assert (record.kind, record.decision, _error(record)) == ("release", "deny", "nonce-replayed")
    assert "envelope_sha256" not in record.body  # sealed, but it never leaves
    assert setup.store.calls == Counter(
        {"context": 1, "consume_nonce_and_append_if_current": 1, "append": 1}
    )


def test_a_one_request_release_replayed_to_the_same_worker_is_refused_before_verifying(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.service.consumed = Lru(16)
    _run(_attested_release(setup))
    with pytest.raises(NonceReplayed, match=r"^nonce was already used$"):
        _run(_attested_release(setup))
    assert len(setup.verified) == 1
    assert len(setup.seals) == 1
    first, second = setup.store.log
    assert (first.decision, second.decision, _error(second)) == ("allow", "deny", "nonce-replayed")


def test_a_token_release_after_a_one_request_release_of_the_same_nonce_is_impossible(
    material: glue.Material,
) -> None:
    """The nonce a one-request release consumed cannot then buy a token either."""
    setup = _setup(material)
    _run(_attested_release(setup))
    _refused(_attest(setup), NonceReplayed)
    assert [(r.kind, r.decision) for r in setup.store.log] == [
        ("release", "allow"),
        ("attest", "deny"),
    ]


def test_a_one_request_release_bound_to_another_key_consumes_its_nonce_and_releases_nothing(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    other = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    body = json.loads(setup.case.attest_body)
    body["tee_pubkey"] = tee_jwk(other)[1]  # not the key the report binds
    with pytest.raises(
        BindingMismatch, match=r"^REPORT_DATA is neither SHA-384 nor SHA-512"
    ) as refused:
        _run(_attested_release(setup, json.dumps(body).encode()))
    assert refused.value.type == "binding-mismatch"
    (record,) = setup.store.log
    assert (record.kind, record.decision, _error(record)) == ("release", "deny", "binding-mismatch")
    assert "key" not in record.body  # no key was looked at
    assert setup.store.calls == Counter({"consume_nonce_and_append": 1})
    assert setup.seals == []


def test_a_one_request_release_decided_on_a_changed_context_consumes_no_nonce_until_it_commits(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.service.contexts.put(setup.context)  # remembered from an earlier release
    setup.store.contexts[glue.KEY_NAME] = replace(setup.context, state="disabled")
    with pytest.raises(KeyDisabled, match=f"^key {glue.KEY_NAME} is disabled$"):
        _run(_attested_release(setup))
    assert setup.store.calls == Counter({"consume_nonce_and_append_if_current": 2, "context": 1})
    (record,) = setup.store.log
    assert (record.decision, _error(record)) == ("deny", "key-disabled")
    assert setup.store.consumed == {decode(setup.case.nonce_text): "snp"}  # by the second


def _limited(setup: Setup, limits: dict[str, Any]) -> None:
    """Bind the key to a version of its policy that states release ``limits``."""
    document = SNP.policy(
        glue.POLICY_NAME, [root.name for root in setup.service.runtime.test_roots]
    )
    document.update(version=2, limits=limits)
    stored, digest = stored_form(load_policy_text(json.dumps(document), is_json=True))
    setup.service.policies.get(stored, digest)
    bound = BoundPolicy(glue.POLICY_NAME, 2, digest)
    setup.context = replace(setup.context, policy=bound)
    setup.store.contexts[glue.KEY_NAME] = setup.context


def test_a_one_request_release_takes_the_release_limits_with_its_nonce(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    _limited(setup, {"max_releases": 2})
    _run(_attested_release(setup))
    (record,) = setup.store.log
    assert (record.decision, record.body["flow"]) == ("allow", "one-request")
    assert setup.store.counters[glue.KEY_NAME].releases == 1
    assert setup.store.consumed == {decode(setup.case.nonce_text): "snp"}
    # Under limits the statement is the conditional one even on a context read just now.
    assert setup.store.calls == Counter({"context": 1, "consume_nonce_and_append_if_current": 1})


def test_a_one_request_release_a_limit_refuses_is_one_denial_committed_with_its_nonce(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    _limited(setup, {"max_releases": 1})
    setup.store.counters[glue.KEY_NAME] = Counters(releases=1)  # released once already
    with pytest.raises(PolicyDenied, match=r"releases < 1, found 1") as refused:
        _run(_attested_release(setup))
    assert [r["rule"] for r in refused.value.reasons] == ["$.limits.max_releases"]
    (record,) = setup.store.log
    assert (record.kind, record.decision, _error(record)) == ("release", "deny", "policy-denied")
    assert record.body["flow"] == "one-request"
    assert record.body["claims"]["tee"] == "snp"  # the attestation's part is kept
    assert "envelope_sha256" not in record.body  # sealed, but it never leaves
    assert len(setup.seals) == 1
    assert setup.store.counters[glue.KEY_NAME].releases == 1  # nothing counted
    # The refused statement wrote nothing; the denial's consumed the nonce.
    assert setup.store.consumed == {decode(setup.case.nonce_text): "snp"}
    assert setup.store.calls == Counter({"context": 1, "consume_nonce_and_append_if_current": 2})


def test_a_release_takes_a_token_or_evidence_never_both(material: glue.Material) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    both = glue.request(setup.case.attest_body, {"name": glue.KEY_NAME}, bearer=token)
    with pytest.raises(BadRequest, match=r"^unknown members: collateral, evidence, nonce, tee$"):
        _run(guest.release(both, setup.case.state))


def test_a_release_without_a_token_or_evidence_asks_for_a_token(material: glue.Material) -> None:
    setup = _setup(material)
    bare = glue.request(setup.case.release_body, {"name": glue.KEY_NAME})
    with pytest.raises(TokenMissing, match=r"^Authorization: Bearer <attestation token>"):
        _run(guest.release(bare, setup.case.state))
    partial = json.loads(setup.case.attest_body)
    del partial["evidence"]
    lean = glue.request(json.dumps(partial).encode(), {"name": glue.KEY_NAME})
    with pytest.raises(BadRequest, match=r"^member 'evidence' is required$"):
        _run(guest.release(lean, setup.case.state))
    assert setup.store.log[1:] == []  # refused before anything was judged


# --- release -----------------------------------------------------------------------------------


def test_a_remembered_context_makes_a_release_one_conditional_append(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    setup.store.calls.clear()
    first = _run(_release(setup, token))
    assert setup.store.calls == Counter({"context": 1, "append_if_current": 1})
    second = _run(_release(setup, token))
    assert setup.store.calls == Counter({"context": 1, "append_if_current": 2})
    assert first["key"] == second["key"] == glue.KEY_NAME
    records = setup.store.log[1:]
    assert [(r.kind, r.decision, r.body["key"]["version"]) for r in records] == [
        ("release", "allow", 1),
        ("release", "allow", 1),
    ]
    assert [r.body["envelope_sha256"] for r in records] == [
        first["envelope_sha256"],
        second["envelope_sha256"],
    ]


def test_a_context_changed_since_it_was_remembered_voids_the_decision_and_its_envelope(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    _run(_release(setup, token))  # remembers the active context
    setup.store.contexts[glue.KEY_NAME] = replace(setup.context, state="disabled")
    setup.store.calls.clear()
    _refused(_release(setup, token), KeyDisabled)
    # Decided and sealed on the remembered context; its append wrote nothing; decided again
    # on a fresh read, and only that decision was recorded.
    assert setup.store.calls == Counter({"append_if_current": 2, "context": 1})
    assert len(setup.seals) == 2  # the first release's envelope, then the void one
    assert [(r.decision, r.body.get("error", {}).get("type")) for r in setup.store.log[1:]] == [
        ("allow", None),
        ("deny", "key-disabled"),
    ]
    assert setup.service.contexts.get(glue.KEY_NAME) == setup.store.contexts[glue.KEY_NAME]


class EverChanging(MemoryReleaseStore):
    """A key that some operator changes again just before each append could commit."""

    async def append_if_current(self, context: ReleaseContext, record: AuditRecord) -> int | None:
        current = self.contexts[context.name]
        self.contexts[context.name] = replace(current, version=current.version + 1)
        return await super().append_if_current(context, record)


def test_a_key_that_changes_at_every_attempt_ends_in_an_audited_unavailable(
    material: glue.Material,
) -> None:
    setup = _setup(material, EverChanging())
    token = _run(_attest(setup))
    setup.store.calls.clear()
    with pytest.raises(Unavailable, match=f"during each of {STALE_ATTEMPTS} attempts"):
        _run(_release(setup, token))
    assert setup.store.calls == Counter(
        {"context": STALE_ATTEMPTS, "append_if_current": STALE_ATTEMPTS, "append": 1}
    )
    assert len(setup.seals) == STALE_ATTEMPTS  # every envelope made was discarded
    record = setup.store.log[-1]
    assert (record.kind, record.decision, _error(record)) == ("release", "error", "unavailable")
    assert "key" not in record.body  # no version stood: the record names none
    assert len(setup.store.log) == 2  # the attestation's and this one


def test_a_refused_token_is_audited_without_looking_at_any_key(material: glue.Material) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    setup.store.calls.clear()
    # The broker's own token, presented for another tee key: recognised, then refused.
    _, other = tee_jwk(rsa.generate_private_key(65537, 3072))
    _refused(_release(setup, token, presented=other), TokenInvalid)
    record = setup.store.log[-1]
    assert (record.kind, record.decision, _error(record)) == ("release", "deny", "token-invalid")
    assert record.body["error"]["detail"] == "token was issued for another tee public key"
    assert record.key_name == glue.KEY_NAME
    assert record.body["token_id"] == setup.store.log[0].body["token_id"]
    assert setup.store.calls == Counter({"append": 1})


def test_an_unknown_key_is_refused_audited_and_never_remembered(material: glue.Material) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    setup.store.calls.clear()
    for _ in range(2):
        _refused(_release(setup, token, "no-such-key"), KeyNotFound)
    assert setup.store.calls == Counter({"context": 2, "append": 2})
    assert setup.service.contexts.get("no-such-key") is None
    assert [(r.decision, _error(r)) for r in setup.store.log[1:]] == [
        ("deny", "key-not-found"),
        ("deny", "key-not-found"),
    ]


def test_without_the_cache_every_release_reads_then_appends_unconditionally(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    setup.service.contexts = ContextCache(0)
    token = _run(_attest(setup))
    setup.store.calls.clear()
    _run(_release(setup, token))
    _run(_release(setup, token))
    assert setup.store.calls == Counter({"context": 2, "append": 2})
    assert [r.decision for r in setup.store.log[1:]] == ["allow", "allow"]


class Down(MemoryReleaseStore):
    """A database that fails when the release's record is to be committed."""

    async def append_if_current(self, context: ReleaseContext, record: AuditRecord) -> int | None:
        raise DatabaseUnavailable("PostgreSQL unavailable: ConnectionResetError")


def test_no_envelope_leaves_when_its_record_cannot_be_committed(material: glue.Material) -> None:
    setup = _setup(material, Down())
    token = _run(_attest(setup))
    with pytest.raises(DatabaseUnavailable):
        _run(_release(setup, token))
    assert len(setup.seals) == 1  # sealed, then discarded with the failed append
    assert [r.kind for r in setup.store.log] == ["attest"]


# --- requests in which nothing the broker issued is recognised ----------------------------------


def _attest_with_nonce(setup: Setup, nonce: bytes, client_request_id: str | None = None) -> Any:
    body = json.loads(setup.case.attest_body)
    body["nonce"] = base64.b64encode(nonce).decode()
    request = glue.request(json.dumps(body).encode())
    if client_request_id is not None:
        request.scope["state"]["client_request_id"] = client_request_id
    return guest.attest(request, setup.case.state)


def _aggregate(setup: Setup) -> list[AuditRecord]:
    """What the aggregate audit writes when the current window closes now."""
    before = len(setup.store.log)
    _run(setup.service.unauthenticated.flush())
    return setup.store.log[before:]


def _unauthenticated_count(setup: Setup, endpoint: str, reason: str) -> float:
    value = setup.service.metrics.registry.get_sample_value(
        "keybroker_unauthenticated_requests_total", {"endpoint": endpoint, "reason": reason}
    )
    return value or 0.0


def test_nonces_the_broker_did_not_issue_append_nothing_until_their_window_closes(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    for _ in range(40):  # this format, random otherwise: the MAC does not verify
        _refused(_attest_with_nonce(setup, bytes([VERSION]) + os.urandom(31)), NonceUnknown)
    for _ in range(2):  # another format version
        _refused(_attest_with_nonce(setup, bytes(32)), NonceUnknown)
    assert setup.store.log == []
    assert setup.store.calls == Counter()
    assert setup.verified == []  # refused before any evidence was read
    assert _unauthenticated_count(setup, ATTEST_ENDPOINT, "nonce-mac") == 40
    assert _unauthenticated_count(setup, ATTEST_ENDPOINT, "nonce-malformed") == 2

    (record,) = _aggregate(setup)
    assert (record.kind, record.decision, record.request_id, record.key_name) == (
        "unauthenticated",
        "deny",
        None,
        None,
    )
    assert record.body["source"] == "127.0.0.1"
    assert record.body["requests"] == {ATTEST_ENDPOINT: {"nonce-mac": 40, "nonce-malformed": 2}}
    assert record.body["total"] == 42
    assert setup.store.calls == Counter({"append": 1})
    assert _aggregate(setup) == []  # the next window has nothing to say


def _forged(setup: Setup, kid: str, signature: bytes = bytes(range(64))) -> str:
    """A token with this broker's header shape whose signature the broker never made."""
    payload = {"iss": "keybroker", "iat": 0, "exp": 2**31, "jti": "f" * 32}
    return jose.sign_sync(payload, jose.TYP_ATTESTATION_RESULT, kid, lambda digest: signature)


def test_tokens_the_broker_did_not_sign_append_nothing_until_their_window_closes(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    other_key = jose.key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    junk = {
        "a.b.c": "token-malformed",
        _forged(setup, setup.service.kid): "token-signature",
        _forged(setup, other_key): "token-key",
    }
    for token, _reason in junk.items():
        for _ in range(3):
            _refused(_release(setup, token), TokenInvalid)
    assert setup.store.log == []
    assert setup.store.calls == Counter()  # not even the key's context was read
    (record,) = _aggregate(setup)
    assert record.body["requests"] == {RELEASE_ENDPOINT: dict.fromkeys(junk.values(), 3)}
    assert record.body["total"] == 9


def test_a_nonce_the_broker_issued_is_audited_alone_however_it_is_refused(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    long_ago = utcnow() - timedelta(hours=2)
    expired, _ = setup.service.nonces.issue("snp", long_ago)
    for _ in range(3):
        _refused(_attest_with_nonce(setup, expired, "guest-7"), NonceExpired)
    assert [(r.kind, r.decision, _error(r)) for r in setup.store.log] == [
        ("attest", "deny", "nonce-expired")
    ] * 3
    assert {r.body["client_request_id"] for r in setup.store.log} == {"guest-7"}
    assert setup.store.calls == Counter({"append": 3})
    assert _aggregate(setup) == []


def test_the_audit_request_id_is_the_brokers_and_the_clients_is_kept_beside_it(
    material: glue.Material,
) -> None:
    setup = _setup(material)
    token = _run(_attest(setup))
    _run(_release(setup, token, origin=Origin("b0b0b0b0b0b0b0b0", "someone-elses-id")))
    _run(_release(setup, token, origin=Origin("c1c1c1c1c1c1c1c1")))
    with_client, without = setup.store.log[1:]
    assert (with_client.request_id, with_client.body["client_request_id"]) == (
        "b0b0b0b0b0b0b0b0",
        "someone-elses-id",
    )
    assert '"request_id":"b0b0b0b0b0b0b0b0"' in with_client.text()
    assert without.request_id == "c1c1c1c1c1c1c1c1"
    assert "client_request_id" not in without.body
