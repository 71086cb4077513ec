"""The release flow end to end over real HTTP: uvicorn on loopback, PostgreSQL, SoftHSM.

One broker serves the whole module, with its own database, trusting two synthetic AMD roots
(``insecure-test-kit-a``, ``insecure-test-kit-b``) through ``insecure_test_roots``; a third
kit (``kit_c``) is trusted by nobody. A second ``keybroker serve`` process on the same
database and token stands for a replica. Guests are simulated with ``broker.guest``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from keybroker_guest.evidence import BindingInput

from broker.guest.client import GuestClient, GuestError, tee_jwk
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.release.binding import expected_report_data
from broker.release.nonces import MAX_CLOCK_SKEW, Nonces
from broker.roles import Role
from broker.settings import Settings
from broker.simulate.guests import SimulatedSnp
from hsm.custody import Custody
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    attest_body,
    audit_rows,
    denied,
    failed_rules,
    fetch,
    last_audit,
    running_deployment,
    seed,
)
from tests.integration.release_support import save_snp_kit as _save_kit
from tests.integration.release_support import snp_policy as _policy
from tests.integration.server import broker_process

pytestmark = pytest.mark.integration

OTHER_MEASUREMENT = hashlib.sha384(b"some other image").digest()


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release")


@pytest.fixture(scope="module")
def kits(deployment_dir: Path) -> dict[str, Path]:
    return {name: _save_kit(deployment_dir, name) for name in ("kit-a", "kit-b", "kit-c")}


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, kits: dict[str, Path], cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    roots = (deployment_dir / "kit-a.pem", deployment_dir / "kit-b.pem")
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        yield running


def _source(deployment: Deployment, kit: str = "kit-a", **options: Any) -> SimulatedSnp:
    return SimulatedSnp(
        deployment.kits[kit], measurement=options.pop("measurement", GOOD_MEASUREMENT), **options
    )


def _attest_body(
    deployment: Deployment, jwk: dict[str, str], nonce: str, bound_to: str | None = None
) -> dict[str, Any]:
    """An attest request for ``nonce`` whose evidence binds ``bound_to`` (default: nonce)."""
    report_data = expected_report_data(bound_to or nonce, jwk, "sha384")
    return attest_body(_source(deployment), jwk, nonce, BindingInput(report_data, b"", b""))


def _minted(custody: Custody, tee: str, issued_at: datetime) -> str:
    """A nonce for ``tee`` as the broker would have issued it at ``issued_at``: the test's
    custody is on the broker's token, so it derives the broker's nonce key."""
    authority = Nonces(custody.nonce_mac_key(), Settings().challenge_ttl_seconds)
    return base64.b64encode(authority.issue(tee, issued_at)[0]).decode()


async def _refused_attest(
    deployment: Deployment, nonce: str, *, recognised: bool = True
) -> dict[str, Any]:
    """The problem document of an attest for ``nonce`` (with evidence that binds it), checked
    to be a 409 audited as a denial with the same type and detail when the nonce is one the
    broker issued (its MAC verifies); else the refusal appends no record of its own (it is
    audited in aggregate, ``tests/integration/test_unauthenticated.py``)."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    rows = await audit_rows(deployment)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        answer = await http.post("/v1/attest", json=_attest_body(deployment, jwk, nonce))
    assert answer.status_code == 409, answer.text
    problem: dict[str, Any] = answer.json()
    if not recognised:
        assert await audit_rows(deployment) == rows
        return problem
    assert await audit_rows(deployment) == rows + 1
    record = await last_audit(deployment, "attest")
    assert record["decision"] == "deny"
    assert record["error"] == {
        "type": problem["type"].rsplit("/", 1)[1],
        "detail": problem["detail"],
    }
    return problem


# --- end to end --------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "bits"), [(32, 3072), (33, 4096), (33, 3072), (32, 4096)])
async def test_simulated_guest_receives_exactly_the_imported_secret(
    deployment: Deployment, length: int, bits: int
) -> None:
    key = f"disk-{length}-{bits}"
    secret = os.urandom(length)
    seed(deployment, key, secret, _policy(f"p-{key}", "insecure-test-kit-a"))

    assert await fetch(deployment, key, _source(deployment), bits) == secret

    record = await last_audit(deployment, "release")
    assert record["decision"] == "allow"
    assert record["key"] == {"name": key, "version": 1}
    assert record["plaintext_in_broker"] is False
    assert record["policy"]["name"] == f"p-{key}"
    assert record["reasons"] == []
    # The claims are in the attest record that issued the token, joined by token_id.
    assert "claims" not in record
    attested = await last_audit(deployment, "attest")
    assert attested["decision"] == "allow"
    assert attested["token_id"] == record["token_id"]
    assert attested["claims"]["tee"] == "snp"


# --- denials -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_key(deployment: Deployment) -> str:
    seed(deployment, "strict", os.urandom(32), _policy("strict", "insecure-test-kit-a", 24))
    return "strict"


async def test_wrong_measurement_is_denied_with_reasons(deployment: Deployment) -> None:
    seed(deployment, "m-key", os.urandom(32), _policy("m-policy", "insecure-test-kit-a"))
    error = await denied(deployment, "m-key", _source(deployment, measurement=OTHER_MEASUREMENT))
    assert error.status == 403
    assert error.problem["type"].endswith("/policy-denied")
    assert any("reference_values" in rule for rule in failed_rules(error)), error.problem
    record = await last_audit(deployment, "release")
    assert record["decision"] == "deny"
    assert record["reasons"] == error.problem["reasons"]


async def test_debug_guest_is_denied(deployment: Deployment) -> None:
    seed(deployment, "d-key", os.urandom(32), _policy("d-policy", "insecure-test-kit-a"))
    error = await denied(deployment, "d-key", _source(deployment, debug=True))
    assert error.status == 403
    assert any("debug" in rule for rule in failed_rules(error)), error.problem
    assert (await last_audit(deployment, "release"))["decision"] == "deny"


async def test_tcb_below_minimum_is_denied(deployment: Deployment, strict_key: str) -> None:
    error = await denied(deployment, strict_key, _source(deployment))
    assert error.status == 403
    assert any("minimum_tcb" in rule for rule in failed_rules(error)), error.problem
    assert any("reported_tcb.snp" in json.dumps(r) for r in error.problem["reasons"])


async def test_other_trusted_root_is_denied_by_signer_rule(deployment: Deployment) -> None:
    seed(deployment, "r-key", os.urandom(32), _policy("r-policy", "insecure-test-kit-a"))
    error = await denied(deployment, "r-key", _source(deployment, kit="kit-b"))
    assert error.status == 403
    assert any("signer" in rule for rule in failed_rules(error)), error.problem


async def test_untrusted_root_is_unverifiable(deployment: Deployment) -> None:
    error = await denied(deployment, "r-key", _source(deployment, kit="kit-c"))
    assert error.status == 422
    assert error.problem["evidence_error"] == "chain-invalid"
    record = await last_audit(deployment, "attest")
    assert record["decision"] == "deny"
    assert record["error"]["type"] == "chain-invalid"


async def test_report_data_not_binding_nonce_and_key_is_refused(deployment: Deployment) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        guest = GuestClient(http)
        nonce = await guest.challenge("snp")
        other_nonce = await guest.challenge("snp")
        # Evidence bound to another nonce than the one presented.
        answer = await http.post(
            "/v1/attest",
            json=_attest_body(deployment, jwk, nonce, bound_to=other_nonce),
        )
    assert answer.status_code == 422
    assert answer.json()["evidence_error"] == "binding-mismatch"
    record = await last_audit(deployment, "attest")
    assert record["decision"] == "deny"
    assert record["error"]["type"] == "binding-mismatch"
    # The failed attestation spent its nonce: evidence that binds it now comes too late.
    problem = await _refused_attest(deployment, nonce)
    assert problem["type"].endswith("/nonce-replayed")


async def test_token_for_another_tee_key_is_refused(deployment: Deployment) -> None:
    seed(deployment, "t-key", os.urandom(32), _policy("t-policy", "insecure-test-kit-a"))
    owner = rsa.generate_private_key(65537, 3072)
    thief = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        guest = GuestClient(http)
        token = await guest.attest(_source(deployment), owner)
        with pytest.raises(GuestError) as caught:
            await guest.release("t-key", token, thief)
    assert caught.value.status == 401
    assert caught.value.problem["type"].endswith("/token-invalid")


async def test_tampered_token_is_refused(deployment: Deployment) -> None:
    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        token = await GuestClient(http).attest(_source(deployment), owner)
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["claims"]["fields"]["measurement"] = GOOD_MEASUREMENT.hex()[::-1]
        forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        answer = await http.post(
            "/v1/keys/t-key/release",
            headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"},
        )
    assert answer.status_code == 401


async def test_unknown_key_is_404_and_disabled_key_is_refused(deployment: Deployment) -> None:
    seed(deployment, "x-key", os.urandom(32), _policy("x-policy", "insecure-test-kit-a"))
    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        guest = GuestClient(http)
        token = await guest.attest(_source(deployment), owner)
        with pytest.raises(GuestError) as missing:
            await guest.release("no-such-key", token, owner)
        assert missing.value.status == 404
        with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
            assert custodian.post("/v1/admin/keys/x-key/disable").status_code == 200
        with pytest.raises(GuestError) as disabled:
            await guest.release("x-key", token, owner)
        assert disabled.value.status == 403
        assert disabled.value.problem["type"].endswith("/key-disabled")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"tee": "snp"}, 400, "member 'evidence' is required"),
        ({"tee": "sev"}, 422, "tee 'sev' is not one of"),
        ({"tee": "snp", "evidence": "!!", "tee_pubkey": {}, "nonce": "x"}, 400, "not base64"),
        (
            {"tee": "snp", "evidence": "AA==", "tee_pubkey": {"kty": "RSA"}, "nonce": "x"},
            400,
            "JWK n",
        ),
        ({"tee": "snp", "unexpected": 1}, 400, "unknown members: unexpected"),
    ],
)
def test_malformed_attest_requests(
    deployment: Deployment, body: dict[str, Any], status: int, fragment: str
) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post("/v1/attest", json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert fragment in answer.json()["detail"]


def test_unknown_nonce_is_refused(deployment: Deployment) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    unknown_nonce = base64.b64encode(os.urandom(32)).decode()
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post(
            "/v1/attest",
            json=_attest_body(deployment, jwk, unknown_nonce),
        )
    assert answer.status_code == 409
    assert answer.json()["type"].endswith("/nonce-unknown")


async def test_expired_nonce_is_refused(deployment: Deployment, custody: Custody) -> None:
    ttl = timedelta(seconds=Settings().challenge_ttl_seconds)
    nonce = _minted(custody, "snp", datetime.now(UTC) - ttl - timedelta(seconds=5))
    problem = await _refused_attest(deployment, nonce)
    assert problem["type"].endswith("/nonce-expired")
    assert problem["detail"].startswith("nonce expired at ")


async def test_an_expiry_too_far_ahead_is_refused(deployment: Deployment, custody: Custody) -> None:
    ahead = MAX_CLOCK_SKEW + timedelta(minutes=5)
    nonce = _minted(custody, "snp", datetime.now(UTC) + ahead)
    problem = await _refused_attest(deployment, nonce)
    assert problem["type"].endswith("/nonce-unknown")
    assert "not a nonce this broker issues" in problem["detail"]


@pytest.mark.parametrize(
    ("position", "detail"),
    [
        (0, "nonce version 0 != 1: not a nonce this broker issues"),
        (2, "its MAC does not verify"),  # expiry
        (10, "its MAC does not verify"),  # random
        (31, "its MAC does not verify"),  # MAC
    ],
)
async def test_an_altered_nonce_is_refused(
    deployment: Deployment, position: int, detail: str
) -> None:
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        issued = bytearray(base64.b64decode(await GuestClient(http).challenge("snp")))
    issued[position] ^= 0x01
    problem = await _refused_attest(deployment, base64.b64encode(issued).decode(), recognised=False)
    assert problem["type"].endswith("/nonce-unknown")
    assert detail in problem["detail"]


async def test_a_nonce_from_another_token_is_refused(
    deployment: Deployment, other_token: dict[str, Any]
) -> None:
    problem = await _refused_attest(deployment, str(other_token["nonce"]), recognised=False)
    assert problem["type"].endswith("/nonce-unknown")
    assert "not issued by this broker for tee 'snp'" in problem["detail"]


async def _attested(deployment: Deployment) -> tuple[dict[str, str], str]:
    """A tee key's JWK and a nonce that has just been used by a successful attestation."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        nonce = await GuestClient(http).challenge("snp")
        first = await http.post("/v1/attest", json=_attest_body(deployment, jwk, nonce))
    assert first.status_code == 200, first.text
    return jwk, nonce


async def test_a_replay_on_another_worker_is_refused_by_the_database(
    deployment: Deployment,
) -> None:
    _, nonce = await _attested(deployment)
    deployment.app.state.release.consumed.clear()  # as a worker that did not consume it
    problem = await _refused_attest(deployment, nonce)
    assert problem["type"].endswith("/nonce-replayed")
    assert problem["detail"] == "nonce was already used"
    # The replay's evidence verified and a token was signed, but it never left: the denial
    # must not name it (a release record naming that token_id would find no such token).
    record = await last_audit(deployment, "attest")
    assert "claims" in record  # this refusal came after verification, from the database
    assert "token_id" not in record
    async with deployment.db.connection() as conn:
        rows = await conn.fetch(
            "SELECT tee, consumed_at FROM challenges WHERE nonce = $1", base64.b64decode(nonce)
        )
    assert [row["tee"] for row in rows] == ["snp"]


async def test_a_replay_to_the_same_worker_is_refused_before_its_evidence_is_read(
    deployment: Deployment,
) -> None:
    jwk, nonce = await _attested(deployment)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        answer = await http.post("/v1/attest", json=_attest_body(deployment, jwk, nonce))
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("/nonce-replayed")
    record = await last_audit(deployment, "attest")
    assert (record["decision"], record["error"]["type"]) == ("deny", "nonce-replayed")
    # Refused before verification: the evidence was never turned into claims or bound.
    assert "claims" not in record
    assert "binding" not in record
    assert record["evidence_sha256"]  # what was sent is still named


async def test_adding_a_version_does_not_enable_a_disabled_key(deployment: Deployment) -> None:
    seed(deployment, "v-key", os.urandom(32), _policy("v-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.post("/v1/admin/keys/v-key/disable").status_code == 200
        added = custodian.post("/v1/admin/keys/v-key/versions", json={"generate_length": 32})
        assert added.status_code == 201
        assert (added.json()["version"], added.json()["state"]) == (2, "disabled")
    error = await denied(deployment, "v-key", _source(deployment))
    assert error.status == 403
    assert error.problem["type"].endswith("/key-disabled")


async def _release_with_token(deployment: Deployment, key: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        return await http.post(
            f"/v1/keys/{key}/release", headers={"Authorization": f"Bearer {token}"}
        )


async def test_refused_tokens_and_unknown_keys_are_audited(deployment: Deployment) -> None:
    # Not a token this broker signed: refused, and audited in aggregate only.
    rows = await audit_rows(deployment)
    bad = await _release_with_token(deployment, "t-key", "not.a.token")
    assert bad.status_code == 401
    assert bad.json()["type"].endswith("/token-invalid")
    assert await audit_rows(deployment) == rows

    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        token = await GuestClient(http).attest(_source(deployment), owner)
        # The broker's own token, for another tee key: refused and audited alone.
        _, thief = tee_jwk(rsa.generate_private_key(65537, 3072))
        stolen = await http.post(
            "/v1/keys/t-key/release",
            headers={"Authorization": f"Bearer {token}"},
            json={"tee_pubkey": thief},
        )
    assert stolen.status_code == 401
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["key_name"]) == ("deny", "t-key")
    assert record["error"] == {
        "type": "token-invalid",
        "detail": "token was issued for another tee public key",
    }
    missing = await _release_with_token(deployment, "no-such-key", token)
    assert missing.status_code == 404
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["error"]["type"]) == ("deny", "key-not-found")
    assert record["tee_pubkey_thumbprint"]


async def test_a_client_chosen_request_id_never_becomes_the_audit_request_id(
    deployment: Deployment,
) -> None:
    """Any client may send any other guest's id: the audit trail records the broker's own
    id for each request, the client's beside it."""
    victim = "victim-guest-request-0001"
    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        token = await GuestClient(http).attest(_source(deployment), owner)
        answer = await http.post(
            "/v1/keys/no-such-key/release",
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": victim},
        )
    assert answer.status_code == 404
    own = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", own)
    assert answer.json()["request_id"] == own
    async with deployment.db.connection() as conn:
        claimed = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1", victim
        )
        row = await conn.fetchrow(
            "SELECT request_id, record FROM audit_log WHERE request_id = $1", own
        )
    assert claimed == 0
    assert row is not None
    record = json.loads(row["record"])
    assert (record["request_id"], record["client_request_id"]) == (own, victim)
    assert record["error"]["type"] == "key-not-found"


async def test_a_tampered_blob_is_a_500_audited_as_an_error(deployment: Deployment) -> None:
    seed(deployment, "blob-key", os.urandom(32), _policy("blob-policy", "insecure-test-kit-a"))
    # Flipping the bit again restores the blob: the module's later tests (the authorisation
    # matrix re-seals every key version) find the key whole.
    flip = (
        "UPDATE keys SET wrapped_blob ="
        " set_byte(wrapped_blob, 3, get_byte(wrapped_blob, 3) # 1) WHERE name = 'blob-key'"
    )
    async with deployment.db.connection() as conn:
        await conn.execute(flip)
    try:
        error = await denied(deployment, "blob-key", _source(deployment))
    finally:
        async with deployment.db.connection() as conn:
            await conn.execute(flip)
    assert error.status == 500
    assert error.problem["type"].endswith("/blob-invalid")
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["error"]["type"]) == ("error", "blob-invalid")
    assert "envelope_sha256" not in record


async def test_published_policy_versions_cannot_be_edited(deployment: Deployment) -> None:
    seed(deployment, "im-key", os.urandom(32), _policy("im-policy", "insecure-test-kit-a"))
    async with deployment.db.connection() as conn:
        for statement in (
            "UPDATE policies SET document = document || ' ' WHERE name = 'im-policy'",
            "DELETE FROM policies WHERE name = 'im-policy'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await conn.execute(statement)
            assert "published policy versions are immutable" in str(refused.value)


async def test_a_tampered_stored_policy_is_refused_and_audited(deployment: Deployment) -> None:
    seed(deployment, "sp-key", os.urandom(32), _policy("sp-policy", "insecure-test-kit-a"))
    async with deployment.db.connection() as conn, conn.transaction():
        # Only by disabling the database's refusal (its owner can) is a row edited at all.
        await conn.execute("ALTER TABLE policies DISABLE TRIGGER policies_immutable")
        await conn.execute(
            "UPDATE policies SET document = replace(document, '\"vmpl\"', '\"guest_svn\"')"
            " WHERE name = 'sp-policy'"
        )
        await conn.execute("ALTER TABLE policies ENABLE TRIGGER policies_immutable")
    error = await denied(deployment, "sp-key", _source(deployment))
    assert error.status == 500
    assert error.problem["type"].endswith("/stored-policy-invalid")
    assert "does not match its digest" in error.problem["detail"]
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["error"]["type"]) == ("error", "stored-policy-invalid")


@pytest.mark.parametrize("nonce", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_nonces_are_refused(deployment: Deployment, nonce: str) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    body = _attest_body(deployment, jwk, base64.b64encode(os.urandom(32)).decode())
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post("/v1/attest", json={**body, "nonce": nonce})
    assert answer.status_code == 409
    assert answer.json()["type"].endswith("/nonce-unknown")


async def test_a_malformed_nonce_leaves_no_record_of_its_own(deployment: Deployment) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    body = _attest_body(deployment, jwk, base64.b64encode(os.urandom(32)).decode())
    rows = await audit_rows(deployment)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        answer = await http.post("/v1/attest", json={**body, "nonce": "not base64!"})
    assert answer.status_code == 409
    assert answer.json()["detail"] == "nonce is not standard base64"
    assert await audit_rows(deployment) == rows  # audited in aggregate


async def test_a_nonce_issued_for_another_tee_is_refused(deployment: Deployment) -> None:
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        nonce = (await http.post("/v1/challenge", json={"tee": "nitro"})).json()["nonce"]
    problem = await _refused_attest(deployment, nonce, recognised=False)
    assert problem["type"].endswith("/nonce-unknown")
    # One MAC covers the tee: "for another tee" reads as "not for this one".
    assert problem["detail"] == (
        "nonce was not issued by this broker for tee 'snp' (its MAC does not verify: issued "
        "for another tee, by another broker, or altered)"
    )


@pytest.mark.parametrize(
    ("mutate", "status", "fragment"),
    [
        (
            lambda body: {**body, "tee_pubkey": {**body["tee_pubkey"], "kid": 1.5}},
            400,
            "JWK kid must be a string",
        ),
        (lambda body: {**body, "evidence": "A" * 1_400_000}, 400, "larger than"),
    ],
)
def test_bad_attest_bodies_are_400(
    deployment: Deployment, mutate: Any, status: int, fragment: str
) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    body = mutate(_attest_body(deployment, jwk, base64.b64encode(os.urandom(32)).decode()))
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post("/v1/attest", json=body)
    assert answer.status_code == status
    assert fragment in answer.json()["detail"]


def test_a_member_named_twice_is_a_400_naming_it(deployment: Deployment) -> None:
    json_type = {"Content-Type": "application/json"}
    admin = {**json_type, "Authorization": f"Bearer {deployment.tokens[Role.ADMIN]}"}
    with httpx.Client(base_url=deployment.base) as http:
        answers = [
            http.post("/v1/challenge", content=b'{"tee":"tdx","tee":"snp"}', headers=json_type),
            http.post("/v1/attest", content=b'{"tee":"snp","tee":"snp"}', headers=json_type),
            http.post(
                "/v1/admin/tokens",
                content=b'{"name": "x", "role": "auditor", "role": "admin"}',
                headers=admin,
            ),
        ]
    for answer, name in zip(answers, ("tee", "tee", "role"), strict=True):
        assert answer.status_code == 400
        assert answer.json()["detail"] == f"request body names member '{name}' twice"


def test_numbers_in_other_scripts_are_a_400(deployment: Deployment) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        arabic = auditor.get("/v1/admin/audit", params={"limit": "\u0661\u0660"})
        superscript = auditor.get("/v1/admin/policies/m-policy", params={"version": "\u00b2"})
    for answer, name in ((arabic, "limit"), (superscript, "version")):
        assert answer.status_code == 400
        assert answer.json()["detail"] == (
            f"query parameter {name} must be a non-negative integer (digits 0-9)"
        )


def test_deeply_nested_json_is_a_400(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post(
            "/v1/attest", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.json()["detail"] == "request body is not valid JSON"


@pytest.mark.parametrize("name", ["a%00b", "UPPER", "x" * 200, "disk-key%0A"])
def test_malformed_key_names_are_400(deployment: Deployment, name: str) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        release = http.post(f"/v1/keys/{name}/release", headers={"Authorization": "Bearer x.y.z"})
        bind = http.put(
            f"/v1/admin/keys/{name}/policy",
            json={"policy": "p"},
            headers={"Authorization": f"Bearer {deployment.tokens[Role.POLICY_AUTHOR]}"},
        )
    assert release.status_code == 400
    assert "key name" in release.json()["detail"]
    assert bind.status_code == 400


async def test_a_name_with_a_trailing_newline_is_400_and_not_audited(
    deployment: Deployment,
) -> None:
    refused = "is not allowed: 1-128 of a-z 0-9 . _ - starting with a letter or digit"
    custodian = {"Authorization": f"Bearer {deployment.tokens[Role.KEY_CUSTODIAN]}"}
    async with deployment.db.connection() as conn:
        before = await conn.fetchval("SELECT max(seq) FROM audit_log")
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        create = await http.post(
            "/v1/admin/keys", json={"name": "nl-key\n", "generate_length": 32}, headers=custodian
        )
        release = await http.post(
            "/v1/keys/disk-key%0A/release", headers={"Authorization": "Bearer x.y.z"}
        )
    assert (create.status_code, release.status_code) == (400, 400)
    assert create.json()["detail"] == f"key name 'nl-key\\n' {refused}"
    assert release.json()["detail"] == f"key name 'disk-key\\n' {refused}"
    async with deployment.db.connection() as conn:
        assert await conn.fetchval("SELECT max(seq) FROM audit_log") == before


def test_policy_versions_beyond_int32_are_400(deployment: Deployment) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        answer = auditor.get("/v1/admin/policies/m-policy?version=99999999999")
    assert answer.status_code == 400
    assert "outside 1..2147483647" in answer.json()["detail"]


# --- replay ------------------------------------------------------------------------------


async def test_fifty_concurrent_attests_with_one_nonce_yield_one_token(
    deployment: Deployment,
) -> None:
    private = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(private)
    async with httpx.AsyncClient(
        base_url=deployment.base, timeout=60, limits=httpx.Limits(max_connections=50)
    ) as http:
        nonce = await GuestClient(http).challenge("snp")
        body = _attest_body(deployment, jwk, nonce)
        answers = await asyncio.gather(*(http.post("/v1/attest", json=body) for _ in range(50)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 49, statuses
    replays = [a.json()["type"] for a in answers if a.status_code == 409]
    assert all(kind.endswith("/nonce-replayed") for kind in replays)


# --- authorisation matrix ----------------------------------------------------------------

ADMIN_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, Role]] = [
    ("GET", "/v1/admin/keys", None, Role.AUDITOR),
    ("POST", "/v1/admin/keys", {"name": "authz-key", "generate_length": 32}, Role.KEY_CUSTODIAN),
    ("POST", "/v1/admin/keys/authz-key/versions", {"generate_length": 32}, Role.KEY_CUSTODIAN),
    ("POST", "/v1/admin/keys/authz-key/disable", None, Role.KEY_CUSTODIAN),
    ("POST", "/v1/admin/keys/authz-key/enable", None, Role.KEY_CUSTODIAN),
    (
        "POST",
        "/v1/admin/policies",
        {"document": _policy("authz-policy", "amd-ark-milan")},
        Role.POLICY_AUTHOR,
    ),
    ("PUT", "/v1/admin/keys/authz-key/policy", {"policy": "authz-policy"}, Role.POLICY_AUTHOR),
    ("GET", "/v1/admin/keys/authz-key", None, Role.AUDITOR),
    ("PUT", "/v1/admin/keys/authz-key/deletion", {"pending_days": 7}, Role.KEY_CUSTODIAN),
    ("DELETE", "/v1/admin/keys/authz-key/deletion", None, Role.KEY_CUSTODIAN),
    ("GET", "/v1/admin/policies", None, Role.POLICY_AUTHOR),
    ("GET", "/v1/admin/policies/authz-policy", None, Role.AUDITOR),
    ("POST", "/v1/admin/kek/rotate", None, Role.KEY_CUSTODIAN),
    ("GET", "/v1/admin/kek", None, Role.AUDITOR),
    ("POST", "/v1/admin/kek/rewrap", None, Role.KEY_CUSTODIAN),
    ("POST", "/v1/admin/import-wrapping-keys", {}, Role.KEY_CUSTODIAN),
    ("GET", "/v1/admin/whoami", None, Role.AUDITOR),
    ("GET", "/v1/admin/audit", None, Role.AUDITOR),
    ("GET", "/v1/admin/audit/verify", None, Role.AUDITOR),
    ("POST", "/v1/admin/tokens", {"name": "ops", "role": "auditor"}, Role.ADMIN),
    ("GET", "/v1/admin/tokens", None, Role.ADMIN),
    # Revokes the token the POST above created for "ops" (its id is filled in by the test).
    ("DELETE", "/v1/admin/tokens/{ops}", None, Role.ADMIN),
]
# Roles that may also read, so they are not "wrong" for these endpoints.
READERS = {
    "/v1/admin/keys": set(Role),
    "/v1/admin/keys/authz-key": set(Role),
    "/v1/admin/kek": set(Role),
    "/v1/admin/whoami": set(Role),
    "/v1/admin/policies": {Role.POLICY_AUTHOR, Role.AUDITOR, Role.ADMIN, Role.KEY_CUSTODIAN},
    "/v1/admin/policies/authz-policy": {
        Role.POLICY_AUTHOR,
        Role.AUDITOR,
        Role.ADMIN,
        Role.KEY_CUSTODIAN,
    },
}


# A well-formed token that does not exist, and malformed ones: all 401, told apart in detail.
UNKNOWN_TOKEN = "kbadm_" + "0" * 16 + "_" + "0" * 64
MALFORMED_TOKENS = [
    "kbadm_00_00",
    "kbadm_zz",
    "Basic dXNlcjpwYXNz",
    "kbadm_" + "0" * 16 + "_" + "g" * 64,
]


def test_authorisation_matrix(deployment: Deployment) -> None:
    created: dict[str, str] = {}
    with httpx.Client(base_url=deployment.base, timeout=30) as http:
        for method, template, body, right in ADMIN_ENDPOINTS:
            path = template.format(**created) if "{" in template else template
            anonymous = http.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path)
            assert "Authorization: Bearer <admin token> is required" in anonymous.json()["detail"]
            unknown = http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {UNKNOWN_TOKEN}"}
            )
            assert unknown.status_code == 401, (method, path)
            assert unknown.json()["detail"] == "admin token is not valid"
            allowed = READERS.get(path, {right}) if method == "GET" else {right}
            for role in Role:
                if role in allowed:
                    continue
                wrong = http.request(
                    method,
                    path,
                    json=body,
                    headers={"Authorization": f"Bearer {deployment.tokens[role]}"},
                )
                assert wrong.status_code == 403, (method, path, role, wrong.text)
                assert wrong.json()["type"].endswith("/forbidden")
            good = http.request(
                method,
                path,
                json=body,
                headers={"Authorization": f"Bearer {deployment.tokens[right]}"},
            )
            assert good.status_code in (200, 201), (method, path, good.text)
            if template == "/v1/admin/tokens" and method == "POST":
                created["ops"] = good.json()["id"]
    assert "ops" in created  # the DELETE row above really revoked something


@pytest.mark.parametrize("token", MALFORMED_TOKENS)
def test_malformed_admin_tokens_are_refused(deployment: Deployment, token: str) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.get("/v1/admin/keys", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["detail"] in {
        "admin token is malformed",
        "Authorization: Bearer <admin token> is required",
    }


@pytest.mark.parametrize("role", [Role.KEY_CUSTODIAN, Role.POLICY_AUTHOR])
def test_the_admin_api_does_not_create_custodian_or_author_tokens(
    deployment: Deployment, role: Role
) -> None:
    with admin_client(deployment, Role.ADMIN) as admin:
        before = admin.get("/v1/admin/tokens").json()["tokens"]
        refused = admin.post("/v1/admin/tokens", json={"name": "second-hat", "role": role.value})
        after = admin.get("/v1/admin/tokens").json()["tokens"]
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"].endswith("/forbidden")
    assert problem["detail"] == (
        "separation of duties: the admin API creates only admin and auditor tokens; "
        f"a {role.value} token is created with the local CLI (`keybroker admin token create "
        f"--role {role.value}`), which needs the database and HSM credentials"
    )
    assert after == before  # nothing was created


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_the_admin_api_creates_admin_and_auditor_tokens(deployment: Deployment, role: Role) -> None:
    with admin_client(deployment, Role.ADMIN) as admin:
        created = admin.post("/v1/admin/tokens", json={"name": f"api-{role.value}", "role": role})
        assert created.status_code == 201, created.text
        assert created.json()["role"] == role.value
        headers = {"Authorization": f"Bearer {created.json()['token']}"}
        assert admin.get("/v1/admin/keys", headers=headers).status_code == 200


def test_revoked_admin_token_is_refused(deployment: Deployment) -> None:
    with admin_client(deployment, Role.ADMIN) as admin:
        created = admin.post("/v1/admin/tokens", json={"name": "temp", "role": "auditor"}).json()
        headers = {"Authorization": f"Bearer {created['token']}"}
        assert admin.get("/v1/admin/audit", headers=headers).status_code == 200
        assert admin.delete(f"/v1/admin/tokens/{created['id']}").status_code == 200
        refused = admin.get("/v1/admin/audit", headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


def test_locked_binding_refuses_changes_and_policy_versions_only_grow(
    deployment: Deployment,
) -> None:
    seed(deployment, "locked-key", os.urandom(32), _policy("locked-policy", "insecure-test-kit-a"))
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        assert (
            author.put(
                "/v1/admin/keys/locked-key/policy", json={"policy": "locked-policy", "lock": True}
            ).status_code
            == 200
        )
        refused = author.put("/v1/admin/keys/locked-key/policy", json={"policy": "m-policy"})
        assert refused.status_code == 409
        assert "locked" in refused.json()["detail"]
        same_version = _policy("locked-policy", "insecure-test-kit-b")
        assert author.post("/v1/admin/policies", json={"document": same_version}).status_code == 409
        newer = _policy("locked-policy", "insecure-test-kit-b", version=2)
        assert author.post("/v1/admin/policies", json={"document": newer}).status_code == 201


@pytest.mark.parametrize("depth", [63, 64, 100, 900, 1000, 1023, 1500, 5000])
def test_policy_documents_nested_at_any_depth_are_400(deployment: Deployment, depth: int) -> None:
    """Deeper than the loader's bound (64 levels) is a policy-invalid problem; beyond what
    the JSON reader takes (about 1,000), a malformed request; a client error, never a 500."""
    head = '{"format": "keybroker-policy/1", "name": "deep-policy", "version": 1, "admit": '
    body = '{"document": ' + head + "[" * depth + "]" * depth + "}}"
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        answer = author.post(
            "/v1/admin/policies", content=body, headers={"Content-Type": "application/json"}
        )
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    kind = problem["type"].rsplit("/", 1)[-1]
    assert answer.status_code == {"policy-invalid": 422, "malformed-request": 400}[kind]
    if depth <= 1000:
        assert problem["type"].endswith("policy-invalid")
        message = "nested deeper than 64 levels" if depth >= 64 else "expected object"
        assert message in problem["detail"]
    else:
        assert problem["type"].endswith(("policy-invalid", "malformed-request"))
    assert len(answer.content) < 4096  # a problem document, not a traceback


# --- fail closed -------------------------------------------------------------------------


async def test_database_outage_fails_closed_and_recovers(deployment: Deployment) -> None:
    secret = os.urandom(32)
    seed(deployment, "outage-key", secret, _policy("outage-policy", "insecure-test-kit-a"))
    owner = rsa.generate_private_key(65537, 3072)
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        guest = GuestClient(http)
        token = await guest.attest(_source(deployment), owner)
        nonce = await guest.challenge("snp")
        deployment.cluster.stop()
        try:
            with pytest.raises(GuestError) as release_down:
                await guest.release("outage-key", token, owner)
            assert release_down.value.status == 503
            # A challenge needs no database at all: it is answered during the outage...
            issued_while_down = await guest.challenge("snp")
            _, jwk = tee_jwk(owner)
            attest_down = await http.post(
                "/v1/attest",
                json=_attest_body(deployment, jwk, nonce),
            )
            assert attest_down.status_code == 503
            assert attest_down.json()["type"].endswith("/database-unavailable")
            assert "token" not in attest_down.json()
        finally:
            deployment.cluster.start()
        statuses = []
        released = None
        for _ in range(50):
            try:
                released = await guest.release("outage-key", token, owner)
                break
            except GuestError as exc:
                statuses.append(exc.status)
                await asyncio.sleep(0.2)
        assert set(statuses) <= {503}
        assert released is not None
        assert released.secret == secret
        # ...and its nonce is as good as any once the database is back.
        attested = await http.post(
            "/v1/attest", json=_attest_body(deployment, jwk, issued_while_down)
        )
        assert attested.status_code == 200, attested.text


# --- the audit chain, last -----------------------------------------------------------------


async def test_zz_audit_chain_verifies_then_detects_alteration(deployment: Deployment) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        report = auditor.get("/v1/admin/audit/verify").json()
        assert report["ok"] is True, report
        assert report["records"] > 40
        tail = auditor.get("/v1/admin/audit?limit=5").json()["records"]
        assert len(tail) == 5
    async with deployment.db.transaction() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            "UPDATE audit_log SET record = replace(record, '\"deny\"', '\"allow\"') "
            "WHERE seq = (SELECT min(seq) FROM audit_log WHERE decision = 'deny')"
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    with admin_client(deployment, Role.AUDITOR) as auditor:
        broken = auditor.get("/v1/admin/audit/verify").json()
    assert broken["ok"] is False
    assert broken["reason"] == "hash does not match the record's content"


# --- the one-request release -------------------------------------------------------------


@pytest.fixture(scope="module")
def one_request_key(deployment: Deployment) -> str:
    seed(deployment, "one-key", os.urandom(32), _policy("one-policy", "insecure-test-kit-a"))
    return "one-key"


async def _one_request_body(deployment: Deployment, jwk: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        nonce = await GuestClient(http).challenge("snp")
    return _attest_body(deployment, jwk, nonce)


async def _post_release(
    deployment: Deployment, key: str, body: Any, **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=deployment.base, timeout=30) as http:
        return await http.post(f"/v1/keys/{key}/release", json=body, **kwargs)


async def test_a_one_request_release_is_one_record_with_its_nonce_consumed(
    deployment: Deployment, one_request_key: str
) -> None:
    secret = os.urandom(32)
    seed(deployment, "one-e2e", secret, _policy("one-e2e-policy", "insecure-test-kit-a"))
    rows = await audit_rows(deployment)
    assert await fetch(deployment, "one-e2e", _source(deployment), flow="one-request") == secret
    assert await audit_rows(deployment) == rows + 1  # one record for attestation and release
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["flow"]) == ("allow", "one-request")
    assert record["key"] == {"name": "one-e2e", "version": 1}
    assert record["claims"]["tee"] == "snp"
    assert record["binding"]
    assert "token_id" not in record
    async with deployment.db.connection() as conn:
        consumed = await conn.fetchval(
            "SELECT count(*) FROM challenges WHERE consumed_at = $1",
            datetime.fromisoformat(record["at"]),
        )
    assert consumed == 1


async def test_a_replayed_one_request_release_is_refused_on_this_worker_and_another(
    deployment: Deployment, one_request_key: str
) -> None:
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    body = await _one_request_body(deployment, jwk)
    first = await _post_release(deployment, one_request_key, body)
    assert first.status_code == 200, first.text
    for other_worker in (False, True):
        if other_worker:  # as a worker that did not consume it: the database refuses
            deployment.app.state.release.consumed.clear()
        replay = await _post_release(deployment, one_request_key, body)
        assert replay.status_code == 409, replay.text
        assert replay.json()["type"].endswith("/nonce-replayed")
        assert replay.json()["detail"] == "nonce was already used"
        record = await last_audit(deployment, "release")
        assert (record["decision"], record["error"]["type"]) == ("deny", "nonce-replayed")
        assert "envelope_sha256" not in record  # sealed on the other worker, never sent
        assert ("claims" in record) is other_worker  # verified only where it was not known
    # The nonce cannot buy a token afterwards either.
    problem = await _refused_attest(deployment, body["nonce"])
    assert problem["type"].endswith("/nonce-replayed")


async def test_a_one_request_release_bound_to_another_nonce_is_refused_and_spends_its_nonce(
    deployment: Deployment, one_request_key: str
) -> None:
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        nonce = await GuestClient(http).challenge("snp")
        other = await GuestClient(http).challenge("snp")
    body = _attest_body(deployment, jwk, nonce, bound_to=other)
    answer = await _post_release(deployment, one_request_key, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["evidence_error"] == "binding-mismatch"
    assert answer.json()["detail"].startswith("REPORT_DATA is neither SHA-384 nor SHA-512")
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["error"]["type"]) == ("deny", "binding-mismatch")
    assert "key" not in record  # refused before any key was looked at
    again = await _post_release(deployment, one_request_key, _attest_body(deployment, jwk, nonce))
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/nonce-replayed")


async def test_a_one_request_release_for_another_tee_key_than_the_evidence_binds_is_refused(
    deployment: Deployment, one_request_key: str
) -> None:
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    _, thief = tee_jwk(rsa.generate_private_key(65537, 3072))
    body = await _one_request_body(deployment, jwk)
    answer = await _post_release(deployment, one_request_key, {**body, "tee_pubkey": thief})
    assert answer.status_code == 422, answer.text
    assert answer.json()["evidence_error"] == "binding-mismatch"


async def test_a_release_with_a_token_and_evidence_is_a_400(
    deployment: Deployment, one_request_key: str
) -> None:
    owner = rsa.generate_private_key(65537, 3072)
    _, jwk = tee_jwk(owner)
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        token = await GuestClient(http).attest(_source(deployment), owner)
    body = await _one_request_body(deployment, jwk)
    rows = await audit_rows(deployment)
    answer = await _post_release(
        deployment, one_request_key, body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == "unknown members: collateral, evidence, nonce, tee"
    assert await audit_rows(deployment) == rows


async def test_a_one_request_release_with_an_unknown_nonce_is_409_audited_in_aggregate(
    deployment: Deployment, one_request_key: str
) -> None:
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    nonce = base64.b64encode(bytes(32)).decode()
    rows = await audit_rows(deployment)
    answer = await _post_release(deployment, one_request_key, _attest_body(deployment, jwk, nonce))
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("/nonce-unknown")
    assert await audit_rows(deployment) == rows


# --- replicas ----------------------------------------------------------------------------


async def test_a_nonce_from_one_replica_is_redeemed_on_another_and_replays_refused_on_both(
    deployment: Deployment, one_request_key: str, tmp_path: Path
) -> None:
    """A second ``keybroker serve`` process on the same PostgreSQL and token: what one
    replica issues, the other redeems; what one consumed, neither accepts again."""
    settings = deployment.app.state.settings
    replica = broker_process(
        settings.state_dir,
        tmp_path / "replica.log",
        database_url=settings.database_url.reveal(),
        token_label=settings.token_label,
        user_pin_file=settings.user_pin_file,
        insecure_test_roots=os.pathsep.join(str(p) for p in settings.insecure_test_roots),
        rate_limit_per_second=0,
    )
    here = deployment.base
    with replica as there:
        # One-request flow: the nonce from here, the release there, the replay here.
        _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
        body = await _one_request_body(deployment, jwk)
        async with httpx.AsyncClient(timeout=30) as http:
            released = await http.post(f"{there}/v1/keys/{one_request_key}/release", json=body)
            assert released.status_code == 200, released.text
            for base in (here, there):
                replay = await http.post(f"{base}/v1/keys/{one_request_key}/release", json=body)
                assert replay.status_code == 409, replay.text
                assert replay.json()["type"].endswith("/nonce-replayed")
                assert replay.json()["detail"] == "nonce was already used"
        # Token flow: the nonce there, the attestation here, the release there.
        owner = rsa.generate_private_key(65537, 3072)
        _, owner_jwk = tee_jwk(owner)
        async with httpx.AsyncClient(base_url=there, timeout=30) as http:
            nonce = await GuestClient(http).challenge("snp")
        async with httpx.AsyncClient(timeout=30) as http:
            attest = _attest_body(deployment, owner_jwk, nonce)
            attested = await http.post(f"{here}/v1/attest", json=attest)
            assert attested.status_code == 200, attested.text
            again = await http.post(f"{there}/v1/attest", json=attest)
            assert again.status_code == 409, again.text
            assert again.json()["type"].endswith("/nonce-replayed")
        async with httpx.AsyncClient(base_url=there, timeout=30) as http:
            token = attested.json()["token"]
            secret = await GuestClient(http).release(one_request_key, token, owner)
        assert secret.key == one_request_key
