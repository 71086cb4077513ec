"""Bring your own key without plaintext: key material wrapped with the openssl recipe of
docs/operations.md (run here as written) to an HSM-held wrapping key, unwrapped inside the
token, and released to a guest (PostgreSQL, SoftHSM, a real broker on loopback)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.admin.service import destroy_expired_wrapping_keys
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.timeutil import utcnow
from hsm.custody import Custody
from tests.integration.release_support import (
    Deployment,
    admin_client,
    approved_guest,
    fetch,
    one_kit_deployment,
    snp_policy,
)

pytestmark = pytest.mark.integration

OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("byok"), softhsm) as running:
        yield running


def recipe() -> str:
    """The shell block of docs/operations.md that follows the BYOK recipe marker."""
    text = OPERATIONS.read_text()
    found = re.search(r"<!-- byok-recipe -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/operations.md lost its BYOK recipe"
    return found.group(1)


def wrap_with_openssl(workdir: Path, public_key_pem: str, secret: bytes) -> bytes:
    """``wrapped.bin`` as the documented recipe makes it from ``wrapping.pem`` and
    ``secret.bin`` in ``workdir``."""
    workdir.mkdir()
    (workdir / "wrapping.pem").write_text(public_key_pem)
    (workdir / "secret.bin").write_bytes(secret)
    subprocess.run(["bash", "-euo", "pipefail", "-c", recipe()], cwd=workdir, check=True)
    assert not (workdir / "aes.key").exists()  # the recipe leaves no AES key behind
    return (workdir / "wrapped.bin").read_bytes()


def _wrapping_key(deployment: Deployment, **body: Any) -> dict[str, Any]:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        # An RSA-3072 key pair made in SoftHSM takes seconds on a busy machine.
        made = custodian.post("/v1/admin/import-wrapping-keys", json=body, timeout=120)
    assert made.status_code == 201, made.text
    answer: dict[str, Any] = made.json()
    return answer


def _import(deployment: Deployment, name: str, key_id: str, material: bytes, length: int) -> Any:
    wrapped = {
        "wrapping_key_id": key_id,
        "material": base64.b64encode(material).decode(),
        "secret_length": length,
    }
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        return custodian.post("/v1/admin/keys", json={"name": name, "wrapped": wrapped})


@pytest.mark.parametrize("length", [33, 32, 1])
async def test_material_wrapped_by_the_recipe_is_released_intact(
    deployment: Deployment, tmp_path: Path, length: int
) -> None:
    key = _wrapping_key(deployment)
    assert key["algorithm"] == "CKM_RSA_AES_KEY_WRAP"
    assert key["oaep"] == {"hash": "sha1", "mgf": "mgf1-sha1", "label": ""}
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    secret = os.urandom(length)
    material = wrap_with_openssl(tmp_path / "work", key["public_key"], secret)
    name = f"byok-{length}"
    imported = _import(deployment, name, key["id"], material, length)
    assert imported.status_code == 201, imported.text
    assert imported.json()["secret_length"] == length
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        policy = snp_policy(f"{name}-policy", "insecure-test-kit-a")
        assert author.post("/v1/admin/policies", json={"document": policy}).is_success
        bound = author.put(f"/v1/admin/keys/{name}/policy", json={"policy": policy["name"]})
        assert bound.is_success
    assert await fetch(deployment, name, approved_guest(deployment)) == secret
    async with deployment.db.connection() as conn:
        record = await conn.fetchval(
            "SELECT record FROM audit_log WHERE key_name = $1 AND kind = 'admin'", name
        )
    assert '"origin":"imported-wrapped"' in record
    assert f'"wrapping_key_id":"{key["id"]}"' in record


async def test_material_that_does_not_open_is_refused(
    deployment: Deployment, tmp_path: Path
) -> None:
    first, second = _wrapping_key(deployment), _wrapping_key(deployment)
    secret = os.urandom(32)
    material = wrap_with_openssl(tmp_path / "work", first["public_key"], secret)

    to_another = _import(deployment, "byok-other", second["id"], material, 32)
    assert to_another.status_code == 400
    assert to_another.json()["type"].endswith("/wrapped-key-invalid")
    assert to_another.json()["detail"].startswith(
        f"the RSA-OAEP part does not unwrap under wrapping key {second['id']} "
        "(OAEP with SHA-1, MGF1-SHA1, empty label"
    )

    tampered = bytearray(material)
    tampered[-3] ^= 1
    damaged = _import(deployment, "byok-damaged", first["id"], bytes(tampered), 32)
    assert damaged.status_code == 400
    assert damaged.json()["detail"].startswith(
        "the RFC 5649 part does not unwrap under the AES key of the RSA-OAEP part"
    )

    wrong_length = _import(deployment, "byok-length", first["id"], material, 33)
    assert wrong_length.status_code == 400
    assert wrong_length.json()["detail"] == (
        "wrapped key material is 424 bytes; a 33-byte secret wrapped as "
        "CKM_RSA_AES_KEY_WRAP to an RSA-3072 key is 384 + 48"
    )

    unknown = _import(deployment, "byok-unknown", "0" * 16, material, 32)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"no import wrapping key {'0' * 16}"
    malformed = _import(deployment, "byok-malformed", "XYZ", material, 32)
    assert malformed.status_code == 400
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        both = custodian.post(
            "/v1/admin/keys",
            json={
                "name": "byok-both",
                "generate_length": 32,
                "wrapped": {"wrapping_key_id": first["id"], "material": "AA==", "secret_length": 1},
            },
        )
    assert both.status_code == 400
    assert "exactly one of" in both.json()["detail"]
    with admin_client(deployment, Role.AUDITOR) as auditor:
        assert auditor.get("/v1/admin/keys/byok-other").status_code == 404  # nothing stored


async def test_an_expired_wrapping_key_is_destroyed_and_refused(
    deployment: Deployment, tmp_path: Path
) -> None:
    # The broker's own custody: another one in this process would share the token's login
    # with it, which the broker's shutdown ends (PKCS#11 login state is per application).
    custody: Custody = deployment.app.state.runtime.custody
    key = _wrapping_key(deployment, valid_hours=1)
    material = wrap_with_openssl(tmp_path / "work", key["public_key"], os.urandom(32))
    assert key["id"] not in await destroy_expired_wrapping_keys(deployment.db, custody, utcnow())
    later = utcnow() + timedelta(hours=1, seconds=1)
    assert key["id"] in await destroy_expired_wrapping_keys(deployment.db, custody, later)
    assert custody.destroy_wrapping_key(key["id"]) is False  # the token object is gone

    refused = _import(deployment, "byok-late", key["id"], material, 32)
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"import wrapping key {key['id']} expired at ")


@pytest.mark.parametrize("hours", [0, 169])
def test_a_wrapping_key_is_valid_one_hour_to_a_week(deployment: Deployment, hours: int) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.post("/v1/admin/import-wrapping-keys", json={"valid_hours": hours})
    assert answer.status_code == 400
    assert answer.json()["detail"] == "a wrapping key is valid 1 to 168 hours"


def test_only_custodians_make_wrapping_keys(deployment: Deployment) -> None:
    for role in (Role.ADMIN, Role.AUDITOR, Role.POLICY_AUTHOR):
        with admin_client(deployment, role) as client:
            assert client.post("/v1/admin/import-wrapping-keys", json={}).status_code == 403
