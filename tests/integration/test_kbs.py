"""Trustee's KBS protocol end to end: the test client written from the protocol
(``tests/kbs_client``) against a real broker (uvicorn on loopback, PostgreSQL, SoftHSM).

Simulated SNP guests send ``SnpEvidence`` with their certificate table; simulated TDs send
``TdxEvidence``, whose collateral (the kit's TCB Info, QE Identity, CRLs) was imported into
the broker's collateral store, as an air-gapped deployment would. Every answer is checked
against Trustee's OpenAPI document where it is not stale, every JWE is opened with jwcrypto
after the kbs-types AAD rule, and every refusal has its status, error type and audit record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker import jose
from broker.app import create_app
from broker.collateral.detect import plan_import
from broker.evidence.claims import Tee
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.swtpm import DEMO_PCRS
from broker.simulate.vtpm import PARAVISOR_MEASUREMENT
from broker.store.admin_tokens import Role
from broker.store.collateral import CollateralStore
from broker.timeutil import utcnow
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    last_audit,
    running_deployment,
    save_snp_kit,
    seed,
    snp_policy,
)
from tests.integration.server import broker_options, serving
from tests.kbs_client import openapi
from tests.kbs_client.client import (
    Guest,
    KbsClient,
    KbsError,
    SnpGuest,
    TdxGuest,
    TeeKeyPair,
    open_jwe,
    protected_of,
    runtime_digest,
)
from tests.kbs_client.vtpm import AzureVtpmGuest, init_data_pcr
from tests.kbs_client.wire import ERROR_TYPE_PREFIX

pytestmark = pytest.mark.integration

SNP_ROOT = "insecure-test-kbs-snp"
INTEL_ROOT = "insecure-test-intel-kit"
TD_IMAGE = hashlib.sha384(b"kbs test TD firmware").digest()
OTHER_MEASUREMENT = hashlib.sha384(b"an image nobody approved").digest()
RESOURCE = "/resource/{repository}/{type}/{tag}"


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kbs")


@pytest.fixture(scope="module")
def kits(deployment_dir: Path) -> dict[str, Path]:
    intel = IntelKit.create(now=utcnow())
    intel.save(deployment_dir / "intel")
    (deployment_dir / "intel-kit.pem").write_bytes(
        intel.certificates["root"].public_bytes(Encoding.PEM)
    )
    return {"snp": save_snp_kit(deployment_dir, "kbs-snp"), "intel": deployment_dir / "intel"}


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, kits: dict[str, Path], cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    roots = (deployment_dir / "kbs-snp.pem", deployment_dir / "intel-kit.pem")
    async with running_deployment(
        deployment_dir, softhsm, roots, kits, collateral_fetch=False
    ) as running:
        await _import_collateral(running)
        yield running


async def _import_collateral(deployment: Deployment) -> None:
    """The Intel kit's TDX collateral and the AMD kit's ASK and ARK into the store, as
    ``keybroker collateral import`` would put them there (TdxEvidence carries no
    collateral; Trustee's vTPM evidence carries the VCEK alone)."""
    kit = IntelKit.load(deployment.kits["intel"])
    files = [(name, body) for name, body in kit.collateral(Tee.TDX, now=utcnow()).items()]
    files.append(("cert_chain", SnpKit.load(deployment.kits["snp"]).collateral()["cert_chain"]))
    plan = plan_import(files, tee=None, kind=None, actor="test")
    assert not plan.refused, plan.refused
    await CollateralStore(deployment.db).put(plan.items)


def _tdx_policy(name: str) -> dict[str, Any]:
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "reference_values": {"td": {"tee": "tdx", "values": [{"mr_td": TD_IMAGE.hex()}]}},
        "admit": {"tdx": {"signer": {"roots": [INTEL_ROOT]}, "reference_values": ["td"]}},
    }


def _kbs_key(
    deployment: Deployment,
    key: str,
    policy: dict[str, Any],
    *,
    exposure: str | None = "broker-memory",
    path: str | None = None,
) -> tuple[bytes, str]:
    """A key with a policy, an exposure and a KBS path, set through the admin API as a key
    custodian sets them; its secret and its path."""
    secret = os.urandom(33)
    seed(deployment, key, secret, policy)
    path = path or f"test/key/{key}"
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        if exposure is not None:
            answer = custodian.put(f"/v1/admin/keys/{key}/exposure", json={"exposure": exposure})
            assert answer.status_code == 200, answer.text
            assert answer.json()["exposure"] == exposure
        answer = custodian.put(f"/v1/admin/keys/{key}/kbs-path", json={"path": path})
        assert answer.status_code == 200, answer.text
        assert answer.json()["kbs_path"] == path
    return secret, path


def _snp(deployment: Deployment, **options: Any) -> SnpGuest:
    options.setdefault("measurement", GOOD_MEASUREMENT)
    return SnpGuest(deployment.kits["snp"], **options)


def _td(deployment: Deployment) -> TdxGuest:
    return TdxGuest(deployment.kits["intel"], mr_td=TD_IMAGE)


def _client(deployment: Deployment) -> KbsClient:
    return KbsClient(deployment.base)


def _refusal(error: KbsError, status: int, name: str) -> str:
    """The detail of a refusal, checked to be ``status`` with Trustee's error ``name`` and to
    be the ErrorInformation of the OpenAPI document."""
    assert error.status == status, error
    body = json.loads(error.body)
    openapi.validate("ErrorInformation", body)
    assert set(body) == {"type", "detail"}
    assert body["type"] == ERROR_TYPE_PREFIX + name, body
    assert "Traceback" not in body["detail"]
    detail: str = body["detail"]
    return detail


# --- the whole handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["P-256", "P-521", "RSA-3072"])
async def test_snp_guest_fetches_its_key(deployment: Deployment, kind: str) -> None:
    secret, path = _kbs_key(
        deployment, f"kbs-snp-{kind.lower()}", snp_policy(f"kbs-{kind.lower()}", SNP_ROOT)
    )
    with _client(deployment) as client:
        assert client.fetch(_snp(deployment), path, TeeKeyPair.generate(kind)) == secret

    record = await last_audit(deployment, "release")
    assert record["decision"] == "allow"
    assert record["key"] == {"name": f"kbs-snp-{kind.lower()}", "version": 1}
    assert record["protocol"] == "kbs"
    assert record["kbs_path"] == path
    assert record["plaintext_in_broker"] is True
    alg = "RSA-OAEP-256" if kind.startswith("RSA") else "ECDH-ES+A256KW"
    assert record["envelope"] == {"format": "jwe", "alg": alg, "enc": "A256GCM"}
    attested = await last_audit(deployment, "attest")
    assert attested["token_id"] == record["token_id"]
    assert attested["protocol"] == "kbs"
    assert attested["binding"] == {"rule": "kbs-rcar", "hash": "sha384"}
    assert attested["plaintext_in_broker"] is False


async def test_tdx_guest_fetches_its_key(deployment: Deployment) -> None:
    secret, path = _kbs_key(deployment, "kbs-tdx", _tdx_policy("kbs-tdx"))
    with _client(deployment) as client:
        assert client.fetch(_td(deployment), path) == secret
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["tee"], record["kbs_path"]) == ("allow", "tdx", path)


async def test_every_answer_is_as_trustees_openapi_document_says(deployment: Deployment) -> None:
    _, path = _kbs_key(deployment, "kbs-openapi", snp_policy("kbs-openapi", SNP_ROOT))
    with _client(deployment) as client:
        auth = client.post("/auth", client.auth_request("snp"))
        assert auth.status_code == 200
        assert auth.headers["content-type"] == "application/json"
        openapi.validate(openapi.response_schema("/auth", "post", 200) or "", auth.json())
        challenge = client.auth("snp")
        key = TeeKeyPair.generate()
        attest = client.post("/attest", client.attestation(challenge, _snp(deployment), key))
        assert attest.status_code == 200, attest.text
        openapi.validate(openapi.response_schema("/attest", "post", 200) or "", attest.json())
        answer = client.resource_answer(path)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        openapi.validate(openapi.response_schema(RESOURCE, "get", 200) or "", answer.json())
        assert list(answer.json()) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
        assert protected_of(answer.content)["enc"] == "A256GCM"
        assert open_jwe(answer.content, key.private) is not None


async def test_the_challenge_and_its_cookie(deployment: Deployment) -> None:
    with _client(deployment) as client:
        before = time.time()
        answer = client.post("/auth", client.auth_request("snp"))
    assert answer.status_code == 200
    document = answer.json()
    assert document["extra-params"] == {"selected-hash-algorithm": "sha384"}
    assert len(document["nonce"]) == 44
    assert len(base64.b64decode(document["nonce"], validate=True)) == 32
    # Trustee's cookie: the session id (32 lower-case hex digits) and Expires, nothing else.
    name_value, expires = answer.headers["set-cookie"].split("; ")
    name, value = name_value.split("=")
    assert name == "kbs-session-id"
    assert len(value) == 32
    assert int(value, 16) >= 0
    assert value == value.lower()
    assert expires.startswith("Expires=")
    expires_at = parsedate_to_datetime(expires.removeprefix("Expires=")).timestamp()
    assert 240 < expires_at - before <= 301  # the nonce's lifetime, challenge_ttl_seconds


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["sha512"], "sha512"),
        (["SHA256", "sm3"], "sha256"),
        (["sm3", "sha384", "sha512"], "sha384"),
    ],
)
async def test_the_challenge_selects_a_hash_the_guest_offers(
    deployment: Deployment, offered: list[str], selected: str
) -> None:
    secret, path = _kbs_key(
        deployment,
        f"kbs-hash-{selected}-{len(offered)}",
        snp_policy(f"kbs-hash-{selected}-{len(offered)}", SNP_ROOT),
    )
    with _client(deployment) as client:
        extra = {"supported-hash-algorithms": offered}
        challenge = client.auth("snp", **{"extra-params": extra})
        assert challenge.selected_hash() == selected
        key = TeeKeyPair.generate()
        client.attest(client.attestation(challenge, _snp(deployment), key))
        answer = client.resource_answer(path)
        assert open_jwe(answer.content, key.private) == secret
    assert (await last_audit(deployment, "attest"))["binding"]["hash"] == selected


async def test_a_guest_offering_no_hash_keybroker_binds_with_is_refused(
    deployment: Deployment,
) -> None:
    with _client(deployment) as client, pytest.raises(KbsError) as caught:
        client.auth("snp", **{"extra-params": {"supported-hash-algorithms": ["sm3"]}})
    detail = _refusal(caught.value, 401, "AttestationError")
    assert detail == (
        "RCAR handshake Auth failed: supported-hash-algorithms offers sm3; keybroker binds "
        "with sha384, sha512, sha256"
    )


async def test_a_bearer_token_works_on_another_broker_process(deployment: Deployment) -> None:
    """The token carries everything a release needs; the cookie session is per process."""
    secret, path = _kbs_key(deployment, "kbs-bearer", snp_policy("kbs-bearer", SNP_ROOT))
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
        session_cookie = client.http.cookies["kbs-session-id"]
    settings = deployment.app.state.settings
    other_broker = serving(create_app(settings), **broker_options(settings))
    with other_broker as other_base, KbsClient(other_base) as other:
        answer = other.resource_answer(path, attested.token)
        assert answer.status_code == 200, answer.text
        assert open_jwe(answer.content, attested.key.private) == secret
        other.http.cookies.set("kbs-session-id", session_cookie, path="/kbs/v0")
        with pytest.raises(KbsError) as caught:
            raise KbsError(*_status_body(other.resource_answer(path)))
    assert "no attested kbs-session-id cookie" in _refusal(caught.value, 401, "TokenNotFound")


async def _releases(deployment: Deployment) -> int:
    async with deployment.db.connection() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM audit_log WHERE kind = 'release'")
    return count


def _status_body(answer: httpx.Response) -> tuple[int, bytes]:
    return answer.status_code, answer.content


async def test_an_attested_session_answers_its_token_again(deployment: Deployment) -> None:
    with _client(deployment) as client:
        challenge = client.auth("snp")
        body = client.attestation(challenge, _snp(deployment), TeeKeyPair.generate())
        first = client.attest(body)
        assert client.attest({"anything": "at all"}) == first


async def _fetch_with_init_data(
    deployment: Deployment, guest: Guest, key: TeeKeyPair, initdata: str, path: str
) -> bytes:
    """Attest ``guest`` with ``initdata`` and fetch ``path`` on the session."""
    with _client(deployment) as client:
        challenge = client.auth(guest.tee)
        init = {"format": "toml", "body": initdata}
        client.attest(client.attestation(challenge, guest, key, init_data=init))
        return open_jwe(client.resource_answer(path).content, key.private)


async def test_init_data_is_checked_against_host_data(deployment: Deployment) -> None:
    initdata = 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"aa.toml" = "x"\n'
    digest = hashlib.sha384(initdata.encode()).digest()
    secret, path = _kbs_key(deployment, "kbs-initdata", snp_policy("kbs-initdata", SNP_ROOT))
    guest = _snp(deployment, host_data=digest[:32])
    key = TeeKeyPair.generate()
    assert await _fetch_with_init_data(deployment, guest, key, initdata, path) == secret
    record = await last_audit(deployment, "attest")
    assert record["binding"]["init_data"] == {
        "algorithm": "sha384",
        "digest": digest.hex(),
        "field": "host_data",
    }
    with _client(deployment) as client:
        challenge = client.auth("snp")
        other = {"format": "toml", "body": initdata + "# changed\n"}
        body = client.attestation(challenge, guest, key, init_data=other)
        with pytest.raises(KbsError) as caught:
            client.attest(body)
    detail = _refusal(caught.value, 401, "AttestationError")
    assert detail.startswith("RCAR handshake Attest failed: HOST_DATA ")
    assert (await last_audit(deployment, "attest"))["error"]["type"] == "binding-mismatch"


async def test_a_kbs_token_is_not_a_native_release_token(deployment: Deployment) -> None:
    _kbs_key(deployment, "kbs-native", snp_policy("kbs-native", SNP_ROOT))
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
    async with httpx.AsyncClient(base_url=deployment.base) as http:
        answer = await http.post(
            "/v1/keys/kbs-native/release", headers={"Authorization": f"Bearer {attested.token}"}
        )
    assert answer.status_code == 401
    assert "EC tee key" in answer.json()["detail"]


# --- Azure vTPM guests (az-snp-vtpm, az-tdx-vtpm) on swtpm -----------------------------------

VTPM_TEES = {"az-snp-vtpm": "snp-vtpm", "az-tdx-vtpm": "tdx-vtpm"}
VTPM_KITS = {"az-snp-vtpm": ("snp", SNP_ROOT), "az-tdx-vtpm": ("intel", INTEL_ROOT)}
SHA384 = "sha384 of JCS({additional-evidence, nonce, tee-pubkey}) for this session"


def _vtpm(deployment: Deployment, tee: str, **options: Any) -> AzureVtpmGuest:
    kit = deployment.kits[VTPM_KITS[tee][0]]
    return AzureVtpmGuest(kit, kit.parent / f"swtpm-{tee}", tee, **options)


def _vtpm_policy(tee: str, name: str) -> dict[str, Any]:
    """Admit the simulated paravisor's guests whose vTPM PCR0 and PCR4 are the demo boot's."""
    canonical = VTPM_TEES[tee]
    values = {f"tpm.pcrs.sha256.{pcr}": value.hex() for pcr, value in DEMO_PCRS.items()}
    section: dict[str, Any] = {
        "signer": {"roots": [VTPM_KITS[tee][1]]},
        "reference_values": ["boot"],
    }
    if canonical == "snp-vtpm":
        values["measurement"] = PARAVISOR_MEASUREMENT.hex()
        section["require"] = [{"claim": "vmpl", "equals": 0}]
    return {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "reference_values": {"boot": {"tee": canonical, "values": [values]}},
        "admit": {canonical: section},
    }


def _other_digest() -> bytes:
    """The binding of a challenge this broker never made."""
    return hashlib.sha384(b"another challenge").digest()


async def _vtpm_refusal(
    deployment: Deployment, guest: AzureVtpmGuest, error: str, **attestation: Any
) -> str:
    """Attest ``guest`` over KBS, expect 401 and an attest record of ``error``; the detail
    after the KBS prefix."""
    with _client(deployment) as client:
        challenge = client.auth(guest.tee)
        body = client.attestation(challenge, guest, TeeKeyPair.generate(), **attestation)
        with pytest.raises(KbsError) as caught:
            client.attest(body)
    detail = _refusal(caught.value, 401, "AttestationError")
    record = await last_audit(deployment, "attest")
    assert (record["error"]["type"], record["tee"]) == (error, VTPM_TEES[guest.tee])
    prefix = "RCAR handshake Attest failed: "
    assert detail.startswith(prefix), detail
    return detail.removeprefix(prefix)


@pytest.mark.parametrize("tee", ["az-snp-vtpm", "az-tdx-vtpm"])
async def test_an_azure_vtpm_guest_fetches_its_key(deployment: Deployment, tee: str) -> None:
    """The binding is the quote's extraData, and (v2) the runtime data's user-data."""
    secret, path = _kbs_key(deployment, f"kbs-{tee}", _vtpm_policy(tee, f"kbs-{tee}"))
    with _client(deployment) as client:
        assert client.fetch(_vtpm(deployment, tee), path) == secret
    attested = await last_audit(deployment, "attest")
    assert (attested["decision"], attested["tee"]) == ("allow", VTPM_TEES[tee])
    assert attested["protocol"] == "kbs"
    assert attested["binding"] == {"rule": "kbs-rcar", "hash": "sha384", "field": "tpm.extra_data"}
    assert attested["signer"]["origin"] == "infrastructure-provider"
    released = await last_audit(deployment, "release")
    assert (released["decision"], released["kbs_path"]) == ("allow", path)


async def test_a_vtpm_quote_of_another_challenge_is_a_binding_mismatch(
    deployment: Deployment,
) -> None:
    other = _other_digest()
    guest = _vtpm(deployment, "az-snp-vtpm", bound=other)
    detail = await _vtpm_refusal(deployment, guest, "binding-mismatch")
    assert detail == (f"TPM quote extraData is not {SHA384} (found 48 bytes {other[:8].hex()}...)")


async def test_the_padded_report_data_form_is_not_trustees_vtpm_binding(
    deployment: Deployment,
) -> None:
    """Trustee's attester quotes the digest unpadded, and its verifier compares it exactly."""
    with _client(deployment) as client:
        challenge = client.auth("az-snp-vtpm")
        key = TeeKeyPair.generate()
        digest = runtime_digest("sha384", challenge.nonce, key.public, "")
        guest = _vtpm(deployment, "az-snp-vtpm", bound=digest + bytes(16))
        with pytest.raises(KbsError) as caught:
            client.attest(client.attestation(challenge, guest, key))
    detail = _refusal(caught.value, 401, "AttestationError")
    assert detail.endswith(f"{SHA384} (found 64 bytes {digest[:8].hex()}...)")
    assert (await last_audit(deployment, "attest"))["error"]["type"] == "binding-mismatch"


async def test_v2_user_data_must_carry_what_the_quote_binds(deployment: Deployment) -> None:
    """A quote of another challenge beside this challenge's user-data: the runtime data's
    user-data and the extraData disagree, which v2 evidence may not."""
    guest = _vtpm(deployment, "az-snp-vtpm", quote_data=_other_digest())
    detail = await _vtpm_refusal(deployment, guest, "runtime-data-mismatch")
    assert detail.startswith("runtime data user-data ")
    assert f"!= the quote's extraData {_other_digest().hex()} zero-padded to 64 bytes" in detail


async def test_vtpm_init_data_is_checked_against_pcr8(deployment: Deployment) -> None:
    initdata = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "x"\n'
    digest = hashlib.sha256(initdata.encode()).digest()
    tee = "az-snp-vtpm"
    secret, path = _kbs_key(deployment, "kbs-vtpm-initdata", _vtpm_policy(tee, "kbs-vtpm-init"))
    guest = _vtpm(deployment, tee, init_data_digest=digest)
    key = TeeKeyPair.generate()
    assert await _fetch_with_init_data(deployment, guest, key, initdata, path) == secret
    record = await last_audit(deployment, "attest")
    assert record["binding"]["init_data"] == {
        "algorithm": "sha256",
        "digest": digest.hex(),
        "field": "tpm.pcrs.sha256.8",
    }
    changed = {"format": "toml", "body": initdata + "# changed\n"}
    detail = await _vtpm_refusal(deployment, guest, "binding-mismatch", init_data=changed)
    wanted = init_data_pcr(hashlib.sha256(changed["body"].encode()).digest())
    assert detail == (
        f"sha256 PCR8 {init_data_pcr(digest)[:8].hex()}... is not the init-data digest "
        f"extended once into its reset value ({wanted[:8].hex()}...)"
    )


# --- refusals ---------------------------------------------------------------------------------


async def test_replayed_nonce(deployment: Deployment) -> None:
    """A failed attestation consumed its nonce: the session's nonce cannot attest again."""
    with _client(deployment) as client:
        challenge = client.auth("snp")
        key = TeeKeyPair.generate()
        wrong = client.attestation(challenge, _snp(deployment), key, hash_name="sha512")
        with pytest.raises(KbsError) as caught:
            client.attest(wrong)
        assert "binding-mismatch" not in _refusal(caught.value, 401, "AttestationError")
        assert (await last_audit(deployment, "attest"))["error"]["type"] == "binding-mismatch"
        with pytest.raises(KbsError) as caught:
            client.attest(client.attestation(challenge, _snp(deployment), key))
    detail = _refusal(caught.value, 401, "AttestationError")
    assert detail == "RCAR handshake Attest failed: nonce was already used"
    assert (await last_audit(deployment, "attest"))["error"]["type"] == "nonce-replayed"


async def test_expired_token(deployment: Deployment) -> None:
    _, path = _kbs_key(deployment, "kbs-expired", snp_policy("kbs-expired", SNP_ROOT))
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
    payload = json.loads(base64.urlsafe_b64decode(attested.token.split(".")[1] + "=="))
    payload["iat"] -= 3600
    payload["exp"] -= 3600
    custody = deployment.app.state.runtime.custody  # the broker's own signing key, in its HSM
    kid = jose.key_id(custody.signing_public_key)
    expired = jose.sign_sync(payload, jose.TYP_ATTESTATION_RESULT, kid, custody.sign_digest)
    with KbsClient(deployment.base) as bearer_only:
        answer = bearer_only.resource_answer(path, expired)
    error = KbsError(answer.status_code, answer.content)
    assert _refusal(error, 401, "TokenVerifierError") == "token expired"
    record = await last_audit(deployment, "release")
    assert (record["decision"], record["error"]["type"]) == ("deny", "token-invalid")


async def test_a_token_the_broker_never_signed_is_audited_in_aggregate(
    deployment: Deployment,
) -> None:
    _, path = _kbs_key(deployment, "kbs-forged", snp_policy("kbs-forged", SNP_ROOT))
    before = await _releases(deployment)
    with KbsClient(deployment.base) as stranger:
        answer = stranger.resource_answer(path, "not.a.token")
        counted = stranger.http.get("/metrics").text
    assert _refusal(KbsError(*_status_body(answer)), 401, "TokenVerifierError")
    assert await _releases(deployment) == before  # no record of its own
    assert 'keybroker_unauthenticated_requests_total{endpoint="/kbs/v0/resource/{path}"' in counted


async def test_policy_deny(deployment: Deployment) -> None:
    _, path = _kbs_key(deployment, "kbs-deny", snp_policy("kbs-deny", SNP_ROOT))
    with _client(deployment) as client, pytest.raises(KbsError) as caught:
        client.fetch(_snp(deployment, measurement=OTHER_MEASUREMENT), path)
    detail = _refusal(caught.value, 401, "PolicyDeny")
    assert "kbs-deny" in detail
    record = await last_audit(deployment, "release")
    assert record["decision"] == "deny"
    assert record["error"]["type"] == "policy-denied"
    assert record["reasons"]


async def test_an_hsm_only_key_is_refused_on_the_kbs_path(deployment: Deployment) -> None:
    _, path = _kbs_key(
        deployment, "kbs-hsm-only", snp_policy("kbs-hsm-only", SNP_ROOT), exposure=None
    )
    with _client(deployment) as client, pytest.raises(KbsError) as caught:
        client.fetch(_snp(deployment), path)
    detail = _refusal(caught.value, 401, "JweError")
    assert detail.startswith("key kbs-hsm-only has exposure hsm-only:")
    assert "broker-memory" in detail
    record = await last_audit(deployment, "release")
    assert record["decision"] == "deny"
    assert record["error"]["type"] == "exposure-refused"
    assert record["plaintext_in_broker"] is False
    assert "envelope" not in record
    assert record["policy"]["name"] == "kbs-hsm-only"  # the policy allowed; exposure refused


async def test_unknown_paths(deployment: Deployment) -> None:
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
        missing = client.resource_answer("default/key/nosuch")
        malformed = client.resource_answer("default/key")
        plugin = client.http.get("/kbs/v0/nosuch/thing")
        below = client.http.post("/kbs/v0/auth/more", json=client.auth_request("snp"))
        method = client.http.get("/kbs/v0/auth")
        write = client.http.post("/kbs/v0/resource/default/key/x", content=b"")
    assert attested.token
    detail = _refusal(KbsError(*_status_body(missing)), 401, "PluginInternalError")
    assert detail == "no key answers at KBS path default/key/nosuch"
    record = await last_audit(deployment, "release")
    assert record["key_name"] is None
    assert (record["kbs_path"], record["error"]["type"]) == ("default/key/nosuch", "key-not-found")
    assert "KBS path 'default/key' is not repository/type/tag" in _refusal(
        KbsError(*_status_body(malformed)), 401, "PluginInternalError"
    )
    assert _refusal(KbsError(*_status_body(plugin)), 404, "PluginNotFound")
    assert _refusal(KbsError(*_status_body(below)), 404, "PluginNotFound")
    assert _refusal(KbsError(*_status_body(method)), 405, "MethodNotAllowed")
    assert method.headers["allow"] == "OPTIONS, POST"
    assert _refusal(KbsError(*_status_body(write)), 405, "MethodNotAllowed")
    assert write.headers["allow"] == "GET, OPTIONS"


async def test_head_and_options(deployment: Deployment) -> None:
    """HEAD is not GET here: it would release a key to answer nothing."""
    _, path = _kbs_key(deployment, "kbs-head", snp_policy("kbs-head", SNP_ROOT))
    with _client(deployment) as client:
        client.handshake(_snp(deployment))
        before = await _releases(deployment)
        head = client.http.head(f"/kbs/v0/resource/{path}")
        options = client.http.options("/kbs/v0/attest")
    assert head.status_code == 405
    assert head.headers["allow"] == "GET, OPTIONS"
    assert await _releases(deployment) == before  # nothing was decided
    assert options.status_code == 204
    assert options.headers["allow"] == "OPTIONS, POST"
    assert options.content == b""


async def test_no_session_and_no_token(deployment: Deployment) -> None:
    with _client(deployment) as client:
        answer = client.resource_answer("default/key/disk-key")
        attest = client.post("/attest", {})
    _refusal(KbsError(*_status_body(answer)), 401, "TokenNotFound")
    detail = _refusal(KbsError(*_status_body(attest)), 401, "AttestationError")
    assert "no live session for this kbs-session-id cookie" in detail


@pytest.mark.parametrize(
    ("tee", "message"),
    [
        (
            "nvidia",
            "tee nvidia is not verified by this KBS (az-snp-vtpm, az-tdx-vtpm, sgx, snp, tdx are)",
        ),
        ("sev", "tee 'sev' is not a KBS TEE name"),
    ],
)
async def test_wrong_tee(deployment: Deployment, tee: str, message: str) -> None:
    with _client(deployment) as client, pytest.raises(KbsError) as caught:
        client.auth(tee)
    assert (
        _refusal(caught.value, 401, "AttestationError") == f"RCAR handshake Auth failed: {message}"
    )


async def test_evidence_of_another_tee(deployment: Deployment) -> None:
    with _client(deployment) as client:
        challenge = client.auth("tdx")
        body = client.attestation(challenge, _snp(deployment), TeeKeyPair.generate())
        with pytest.raises(KbsError) as caught:
            client.attest(body)
    detail = _refusal(caught.value, 401, "AttestationError")
    assert "TdxEvidence must have exactly the members cc_eventlog, quote" in detail


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("0.4.0", True),
        ("0.4.0+build.7", True),
        ("0.0.0", False),
        ("0.4.0-rc.1", False),
        ("v0.4.0", False),
        ("0.4", False),
        ("0.1.1", False),
    ],
)
async def test_protocol_version(deployment: Deployment, version: str, accepted: bool) -> None:
    with _client(deployment) as client:
        answer = client.post("/auth", client.auth_request("snp", version=version))
    if accepted:
        assert answer.status_code == 200, answer.text
        return
    detail = _refusal(KbsError(*_status_body(answer)), 401, "AttestationError")
    assert detail.startswith("RCAR handshake Auth failed: ")
    assert "Version Mismatch" in detail or "is not a semantic version" in detail


async def test_oversize_evidence(deployment: Deployment) -> None:
    limit = deployment.app.state.settings.max_request_bytes
    with _client(deployment) as client:
        challenge = client.auth("snp")
        body = client.attestation(challenge, _snp(deployment), TeeKeyPair.generate())
        body["tee-evidence"]["additional_evidence"] = "x" * limit
        with pytest.raises(KbsError) as caught:
            client.attest(body)
    detail = _refusal(caught.value, 401, "AttestationError")
    assert detail == f"RCAR handshake Attest failed: request body larger than {limit} bytes"


async def test_a_member_named_twice(deployment: Deployment) -> None:
    with _client(deployment) as client:
        answer = client.http.post(
            "/kbs/v0/auth",
            content=b'{"version": "0.4.0", "tee": "snp", "tee": "tdx"}',
            headers={"Content-Type": "application/json"},
        )
    assert _refusal(KbsError(*_status_body(answer)), 401, "AttestationError") == (
        "RCAR handshake Auth failed: request body names member 'tee' twice"
    )


async def test_nonce_of_another_session(deployment: Deployment) -> None:
    with _client(deployment) as client:
        first = client.auth("snp")
        client.auth("snp")  # a new session replaces the cookie
        body = client.attestation(first, _snp(deployment), TeeKeyPair.generate())
        with pytest.raises(KbsError) as caught:
            client.attest(body)
    assert _refusal(caught.value, 401, "AttestationError") == (
        "RCAR handshake Attest failed: runtime-data.nonce is not this session's challenge nonce"
    )


async def test_token_expiry_claims_are_integers(deployment: Deployment) -> None:
    """The reference client parses the payload as jwt-simple JWTClaims before reuse."""
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
    payload = json.loads(base64.urlsafe_b64decode(attested.token.split(".")[1] + "=="))
    assert isinstance(payload["iat"], int)
    assert isinstance(payload["exp"], int)
    assert payload["exp"] > time.time()
    assert isinstance(payload["iss"], str)
    assert isinstance(payload["jti"], str)
    assert "nbf" not in payload
    assert "aud" not in payload
    assert timedelta(seconds=payload["exp"] - payload["iat"]) == timedelta(seconds=300)


# --- the key custodian's settings ----------------------------------------------------------------


async def test_an_exposure_change_is_honoured_by_the_next_release(deployment: Deployment) -> None:
    """The exposure is part of the release context the audit append compares: a worker that
    remembers the key as broker-memory decides again once it is hsm-only."""
    secret, path = _kbs_key(deployment, "kbs-change", snp_policy("kbs-change", SNP_ROOT))
    with _client(deployment) as client:
        attested = client.handshake(_snp(deployment))
        first = client.resource_answer(path)
        assert open_jwe(first.content, attested.key.private) == secret  # context now cached
        with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
            answer = custodian.put(
                "/v1/admin/keys/kbs-change/exposure", json={"exposure": "hsm-only"}
            )
            assert answer.status_code == 200, answer.text
        second = client.resource_answer(path)
    _refusal(KbsError(*_status_body(second)), 401, "JweError")
    record = await last_audit(deployment, "release")
    assert record["error"]["type"] == "exposure-refused"


async def test_custodian_settings_through_the_admin_api(deployment: Deployment) -> None:
    _kbs_key(deployment, "kbs-admin-a", snp_policy("kbs-admin-a", SNP_ROOT), path="shared/key/one")
    seed(deployment, "kbs-admin-b", os.urandom(16), snp_policy("kbs-admin-b", SNP_ROOT))
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        taken = custodian.put(
            "/v1/admin/keys/kbs-admin-b/kbs-path", json={"path": "shared/key/one"}
        )
        assert taken.status_code == 409
        assert (
            taken.json()["detail"]
            == "KBS path shared/key/one is key kbs-admin-a's; clear it there first"
        )
        bad = custodian.put("/v1/admin/keys/kbs-admin-b/kbs-path", json={"path": "a/b"})
        assert bad.status_code == 400
        assert "is not repository/type/tag" in bad.json()["detail"]
        dotted = custodian.put("/v1/admin/keys/kbs-admin-b/kbs-path", json={"path": ".a/b/c"})
        assert dotted.status_code == 400
        unknown = custodian.put("/v1/admin/keys/nosuch/kbs-path", json={"path": "a/b/c"})
        assert unknown.status_code == 404
        exposure = custodian.put("/v1/admin/keys/kbs-admin-b/exposure", json={"exposure": "memory"})
        assert exposure.status_code == 400
        assert (
            exposure.json()["detail"] == "exposure 'memory' is not one of hsm-only, broker-memory"
        )
        cleared = custodian.delete("/v1/admin/keys/kbs-admin-a/kbs-path")
        assert cleared.status_code == 200
        assert cleared.json()["kbs_path"] is None
        moved = custodian.put(
            "/v1/admin/keys/kbs-admin-b/kbs-path", json={"path": "shared/key/one"}
        )
        assert moved.json()["kbs_path"] == "shared/key/one"
        listed = {key["name"]: key for key in custodian.get("/v1/admin/keys").json()["keys"]}
    assert (listed["kbs-admin-b"]["kbs_path"], listed["kbs-admin-b"]["exposure"]) == (
        "shared/key/one",
        "hsm-only",
    )
    assert listed["kbs-admin-a"]["kbs_path"] is None
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        refused = author.put(
            "/v1/admin/keys/kbs-admin-b/exposure", json={"exposure": "broker-memory"}
        )
    assert refused.status_code == 403
    record = await last_audit(deployment, "admin")
    assert (record["action"], record["kbs_path"]) == ("key.set_kbs_path", "shared/key/one")


async def test_a_new_version_keeps_the_exposure(deployment: Deployment) -> None:
    secret, path = _kbs_key(deployment, "kbs-rotated", snp_policy("kbs-rotated", SNP_ROOT))
    newer = os.urandom(40)
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.post(
            "/v1/admin/keys/kbs-rotated/versions", json={"secret": base64.b64encode(newer).decode()}
        )
        assert answer.status_code == 201, answer.text
        assert (answer.json()["version"], answer.json()["exposure"]) == (2, "broker-memory")
        assert answer.json()["kbs_path"] == path
    with _client(deployment) as client:
        assert client.fetch(_snp(deployment), path) == newer
    assert secret != newer
