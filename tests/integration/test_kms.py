"""The KMS-compatible endpoint driven by the real AWS SDK for Python (boto3) against a real
broker (uvicorn on loopback, PostgreSQL, SoftHSM).

A simulated Nitro enclave (the synthetic AWS kit, trusted through ``insecure_test_roots``)
makes attestation documents whose ``public_key`` is its RSA key; every
``CiphertextForRecipient`` is opened with ``openssl cms -decrypt`` and its structure read
with ``openssl asn1parse``. Every refusal is the typed exception boto3 raises for the KMS
error type, and every decision is in the audit log.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.admin.service import destroy_due_keys
from broker.errors import BindingMismatch, CertificateExpired
from broker.localstate.softhsm import LocalSoftHsm
from broker.simulate.guests import DEBUG_ZERO_PCRS, DEMO_PCRS
from broker.simulate.nitro import FakeNitroAuthority
from broker.store.admin_tokens import Role
from broker.timeutil import parse_instant, utcnow
from tests.integration.release_support import (
    Deployment,
    admin_client,
    last_audit,
    running_deployment,
)

pytestmark = pytest.mark.integration

NITRO_ROOT = "insecure-test-kms-nitro"
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "nitro" / "evervault-docs"
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kms")


@pytest.fixture(scope="module")
def authority(deployment_dir: Path) -> FakeNitroAuthority:
    made = FakeNitroAuthority.generate()
    made.save(deployment_dir / "nitro")
    (deployment_dir / "kms-nitro.pem").write_bytes(
        made.root.public_bytes(serialization.Encoding.PEM)
    )
    return made


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, authority: FakeNitroAuthority, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with running_deployment(
        deployment_dir, softhsm, (deployment_dir / "kms-nitro.pem",), {}
    ) as running:
        _seed(running)
        yield running


def _policy(name: str, kms: dict[str, Any] | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": "keybroker-policy/1",
        "name": name,
        "version": 1,
        "admit": {"nitro": {"signer": {"roots": [NITRO_ROOT]}}},
    }
    if kms is not None:
        document["kms"] = kms
    return document


#: key -> (its policy's kms member, exposure)
KEYS: dict[str, tuple[dict[str, Any] | None, str]] = {
    "enclave-data-key": ({}, "broker-memory"),
    "unattested-key": ({"insecure_allow_unattested": True}, "broker-memory"),
    "hsm-only-key": ({"insecure_allow_unattested": True}, "hsm-only"),
    "not-for-kms": (None, "broker-memory"),
    "other-callers-key": ({"access_keys": ["someone-else"]}, "broker-memory"),
}


#: A key released once in all (``limits``), over KMS only to a Recipient though its policy
#: opts in to unattested plaintext: limits count hardware identities.
LIMITED_KEY = "limited-key"


def _seed(deployment: Deployment) -> None:
    for key, (kms, exposure) in KEYS.items():
        _seed_key(deployment, key, kms, exposure)
    kms, exposure = KEYS["unattested-key"]
    _seed_key(deployment, LIMITED_KEY, kms, exposure, limits={"max_releases": 1})


def _seed_key(
    deployment: Deployment,
    key: str,
    kms: dict[str, Any] | None,
    exposure: str,
    limits: dict[str, Any] | None = None,
) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.post("/v1/admin/keys", json={"name": key, "generate_length": 32})
        assert answer.status_code == 201, answer.text
        answer = custodian.put(f"/v1/admin/keys/{key}/exposure", json={"exposure": exposure})
        assert answer.status_code == 200, answer.text
    policy = _policy(f"p-{key}", kms)
    if limits is not None:
        policy["limits"] = limits
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        assert author.post("/v1/admin/policies", json={"document": policy}).status_code == 201
        bound = author.put(f"/v1/admin/keys/{key}/policy", json={"policy": policy["name"]})
        assert bound.status_code == 200, bound.text


def _access_key(deployment: Deployment, name: str) -> dict[str, str]:
    with admin_client(deployment, Role.ADMIN) as admin:
        answer = admin.post("/v1/admin/access-keys", json={"name": name})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _kms(deployment: Deployment, key: dict[str, str], secret: str | None = None) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=deployment.base,
        region_name="eu-west-1",
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=secret or key["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def caller(deployment: Deployment) -> dict[str, str]:
    return _access_key(deployment, "enclave-app")


@pytest.fixture(scope="module")
def kms(deployment: Deployment, caller: dict[str, str]) -> Any:
    return _kms(deployment, caller)


class Enclave:
    """A simulated Nitro enclave: its RSA-2048 key (as the Nitro SDK makes) and documents."""

    def __init__(self, authority: FakeNitroAuthority, directory: Path) -> None:
        self.authority = authority
        self.key = rsa.generate_private_key(65537, 2048)
        self.key_file = directory / f"enclave-{id(self)}.pem"
        self.key_file.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def document(self, *, debug: bool = False, age: timedelta = timedelta(0)) -> bytes:
        pcrs = dict(DEMO_PCRS)
        if debug:
            pcrs.update({index: bytes(48) for index in DEBUG_ZERO_PCRS})
        for index in range(3, 16):
            pcrs.setdefault(index, bytes(48))
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return self.authority.sign_document(pcrs=pcrs, timestamp=utcnow() - age, public_key=spki)

    def recipient(self, **options: Any) -> dict[str, Any]:
        return {
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            "AttestationDocument": self.document(**options),
        }

    def open(self, envelope: bytes, directory: Path) -> bytes:
        """``openssl cms -decrypt`` of ``envelope`` with the enclave's key."""
        assert OPENSSL is not None
        source = directory / "envelope.der"
        source.write_bytes(envelope)
        return subprocess.run(
            [
                OPENSSL,
                "cms",
                "-decrypt",
                "-binary",
                "-inform",
                "DER",
                "-in",
                str(source),
                "-inkey",
                str(self.key_file),
            ],
            check=True,
            capture_output=True,
        ).stdout


@pytest.fixture(scope="module")
def enclave(authority: FakeNitroAuthority, deployment_dir: Path) -> Enclave:
    return Enclave(authority, deployment_dir)


def _asn1parse(der: bytes) -> str:
    """``openssl asn1parse`` of ``der``: the structure as an independent reader sees it."""
    return subprocess.run(
        [OPENSSL or "openssl", "asn1parse", "-inform", "DER"],
        input=der,
        check=True,
        capture_output=True,
    ).stdout.decode()


@contextmanager
def _access_denied() -> Iterator[pytest.ExceptionInfo[ClientError]]:
    """A refusal AWS answers ``AccessDeniedException`` (not in the KMS model: boto3 raises a
    ``ClientError`` with that code, as for real KMS)."""
    with pytest.raises(ClientError) as caught:
        yield caught
    assert _error(caught) == "AccessDeniedException", caught.value.response


def _error(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


# --- the round trips ---------------------------------------------------------------------


@pytest.mark.skipif(OPENSSL is None, reason="openssl (Debian package) is not installed")
async def test_encrypt_then_decrypt_to_the_attested_enclave(
    deployment: Deployment, kms: Any, enclave: Enclave, tmp_path: Path
) -> None:
    secret = b"the database password of the enclave"
    context = {"purpose": "db", "tenant": "a"}
    encrypted = kms.encrypt(
        KeyId="alias/enclave-data-key", Plaintext=secret, EncryptionContext=context
    )
    assert encrypted["KeyId"].endswith(":key/enclave-data-key")
    blob = encrypted["CiphertextBlob"]
    assert secret not in blob

    answer = kms.decrypt(
        CiphertextBlob=blob, EncryptionContext=context, Recipient=enclave.recipient()
    )
    assert "Plaintext" not in answer  # CiphertextForRecipient only
    envelope = answer["CiphertextForRecipient"]
    assert enclave.open(envelope, tmp_path) == secret
    structure = _asn1parse(envelope)
    for part in ("pkcs7-envelopedData", "rsaesOaep", "sha256", "mgf1", "pkcs7-data"):
        assert part in structure, structure
    assert "aes-256-cbc" in structure
    record = await last_audit(deployment, "kms")
    assert record["decision"] == "allow"
    assert record["operation"] == "Decrypt"
    assert record["plaintext_in_broker"] is True
    assert record["plaintext_to"] == "recipient"
    assert record["envelope"]["format"] == "cms"
    assert record["recipient"]["tee"] == "nitro"
    assert record["access_key"] == "enclave-app"


@pytest.mark.skipif(OPENSSL is None, reason="openssl (Debian package) is not installed")
async def test_generate_data_key_for_the_enclave(
    kms: Any, enclave: Enclave, tmp_path: Path
) -> None:
    answer = kms.generate_data_key(
        KeyId="enclave-data-key", KeySpec="AES_256", Recipient=enclave.recipient()
    )
    assert "Plaintext" not in answer
    data_key = enclave.open(answer["CiphertextForRecipient"], tmp_path)
    assert len(data_key) == 32
    again = kms.decrypt(CiphertextBlob=answer["CiphertextBlob"], Recipient=enclave.recipient())
    assert enclave.open(again["CiphertextForRecipient"], tmp_path) == data_key

    without = kms.generate_data_key_without_plaintext(KeyId="enclave-data-key", NumberOfBytes=16)
    assert "Plaintext" not in without
    assert "CiphertextForRecipient" not in without

    random = kms.generate_random(NumberOfBytes=48, Recipient=enclave.recipient())
    assert "Plaintext" not in random
    assert len(enclave.open(random["CiphertextForRecipient"], tmp_path)) == 48


async def test_unattested_plaintext_only_where_the_policy_allows_it(
    deployment: Deployment, kms: Any
) -> None:
    blob = kms.encrypt(KeyId="unattested-key", Plaintext=b"x" * 100)["CiphertextBlob"]
    answer = kms.decrypt(CiphertextBlob=blob, KeyId="unattested-key")
    assert answer["Plaintext"] == b"x" * 100
    assert "CiphertextForRecipient" not in answer
    record = await last_audit(deployment, "kms")
    assert (record["plaintext_to"], record["plaintext_in_broker"]) == ("caller", True)

    generated = kms.generate_data_key(KeyId="unattested-key", NumberOfBytes=24)
    assert len(generated["Plaintext"]) == 24
    assert "CiphertextForRecipient" not in generated
    reopened = kms.decrypt(CiphertextBlob=generated["CiphertextBlob"])
    assert reopened["Plaintext"] == generated["Plaintext"]
    assert len(kms.generate_random(NumberOfBytes=7)["Plaintext"]) == 7

    attested_only = kms.encrypt(KeyId="enclave-data-key", Plaintext=b"attested only")[
        "CiphertextBlob"
    ]
    with _access_denied() as caught:
        kms.decrypt(CiphertextBlob=attested_only)
    assert "insecure_allow_unattested" in caught.value.response["Error"]["Message"]
    with _access_denied():
        kms.generate_data_key(KeyId="enclave-data-key", NumberOfBytes=32)
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "kms-use-refused")


@pytest.mark.skipif(OPENSSL is None, reason="openssl (Debian package) is not installed")
async def test_release_limits_count_recipients_and_refuse_unattested_calls(
    deployment: Deployment, kms: Any, enclave: Enclave, tmp_path: Path
) -> None:
    for call in (
        lambda: kms.encrypt(KeyId=LIMITED_KEY, Plaintext=b"x"),
        lambda: kms.generate_data_key(KeyId=LIMITED_KEY, NumberOfBytes=32),
        lambda: kms.generate_data_key_without_plaintext(KeyId=LIMITED_KEY, NumberOfBytes=32),
    ):
        with _access_denied() as caught:
            call()
        message = caught.value.response["Error"]["Message"]
        assert "states release limits" in message
        assert "needs a Recipient" in message
        record = await last_audit(deployment, "kms")
        assert (record["decision"], record["error"]["type"]) == ("deny", "kms-use-refused")
    async with deployment.db.connection() as conn:
        counted = "SELECT releases FROM release_counts WHERE key_name = $1"
        assert await conn.fetchval(counted, LIMITED_KEY) is None  # refusals count nothing

    answer = kms.generate_data_key(
        KeyId=LIMITED_KEY, NumberOfBytes=32, Recipient=enclave.recipient()
    )
    assert len(enclave.open(answer["CiphertextForRecipient"], tmp_path)) == 32
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["plaintext_to"]) == ("allow", "recipient")

    with _access_denied() as caught:
        kms.decrypt(CiphertextBlob=answer["CiphertextBlob"], Recipient=enclave.recipient())
    assert "releases < 1, found 1" in caught.value.response["Error"]["Message"]
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "policy-denied")
    assert [reason["rule"] for reason in record["reasons"]] == ["$.limits.max_releases"]
    assert "envelope_sha256" not in record  # the envelope the decision made never left
    async with deployment.db.connection() as conn:
        assert await conn.fetchval(counted, LIMITED_KEY) == 1


async def test_typed_refusals(deployment: Deployment, kms: Any, enclave: Enclave) -> None:
    blob = kms.encrypt(KeyId="unattested-key", Plaintext=b"bound", EncryptionContext={"a": "1"})[
        "CiphertextBlob"
    ]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "2"})
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob)  # the context is part of the ciphertext
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext={"a": "1"})
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=b"not a keybroker blob")
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=blob, KeyId="enclave-data-key", EncryptionContext={"a": "1"})
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId="alias/no-such-key", Plaintext=b"x")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId="not-for-kms")  # its policy does not serve it over KMS
    with _access_denied() as caught:
        kms.encrypt(KeyId="not-for-kms", Plaintext=b"x")
    assert "no kms member" in caught.value.response["Error"]["Message"]
    with _access_denied() as caught:
        kms.encrypt(KeyId="other-callers-key", Plaintext=b"x")
    assert "kms.access_keys" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unknown:
        kms.sign(KeyId="enclave-data-key", Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    assert _error(unknown) == "UnknownOperationException"


async def test_hsm_only_key_refuses_plaintext_in_broker_memory(
    deployment: Deployment, kms: Any, enclave: Enclave
) -> None:
    blob = kms.encrypt(KeyId="hsm-only-key", Plaintext=b"in the token")["CiphertextBlob"]
    for call in (
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=enclave.recipient()),
        lambda: kms.decrypt(CiphertextBlob=blob),
        lambda: kms.generate_data_key(KeyId="hsm-only-key", NumberOfBytes=32),
    ):
        with _access_denied() as caught:
            call()
        assert "exposure hsm-only" in caught.value.response["Error"]["Message"]
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "exposure-refused")


async def test_debug_and_stale_documents_are_refused(
    deployment: Deployment, kms: Any, enclave: Enclave
) -> None:
    blob = kms.encrypt(KeyId="enclave-data-key", Plaintext=b"refused")["CiphertextBlob"]
    with _access_denied() as caught:
        kms.decrypt(CiphertextBlob=blob, Recipient=enclave.recipient(debug=True))
    assert "debug" in caught.value.response["Error"]["Message"]
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "policy-denied")
    assert record["recipient"]["claims"]["debug"] is True

    with _access_denied():
        kms.decrypt(CiphertextBlob=blob, Recipient=enclave.recipient(age=timedelta(minutes=6)))
    record = await last_audit(deployment, "kms")
    assert record["error"]["type"] == "binding-mismatch"

    document = bytearray(enclave.document())
    document[-5] ^= 1  # inside the COSE signature
    with _access_denied():
        kms.decrypt(
            CiphertextBlob=blob,
            Recipient={
                "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                "AttestationDocument": bytes(document),
            },
        )
    record = await last_audit(deployment, "kms")
    assert record["error"]["type"] == "signature-invalid"


async def test_real_nitro_documents_at_their_instant(deployment: Deployment) -> None:
    """AWS-signed documents verify at their instant, and are refused as recipients: none
    carries an RSA public_key. At today's clock their 3-hour certificates have expired."""
    service = deployment.app.state.kms  # type: ignore[attr-defined]
    production = (VECTORS / "valid-attestation-doc-2022-10-13.cose").read_bytes()
    with pytest.raises(BindingMismatch, match="no public_key"):
        service.verify_recipient(production, parse_instant("2022-10-13T08:58:20Z"))
    debug = (VECTORS / "debug-mode-attestation-doc-2022-10-12.cose").read_bytes()
    with pytest.raises(BindingMismatch, match="not a DER SubjectPublicKeyInfo"):
        service.verify_recipient(debug, parse_instant("2022-10-12T13:50:10Z"))
    with pytest.raises(CertificateExpired):
        service.verify_recipient(production, utcnow())


async def test_metadata_operations(kms: Any) -> None:
    described = kms.describe_key(KeyId="alias/enclave-data-key")["KeyMetadata"]
    assert described["KeyId"] == "enclave-data-key"
    assert described["Enabled"] is True
    names = {key["KeyId"] for key in kms.list_keys()["Keys"]}
    assert names == {"enclave-data-key", "unattested-key", "hsm-only-key", LIMITED_KEY}
    aliases = {alias["AliasName"] for alias in kms.list_aliases()["Aliases"]}
    assert "alias/enclave-data-key" in aliases
    assert "alias/not-for-kms" not in aliases


async def test_keys_show_names_the_alias_only_of_keys_served_over_kms(
    deployment: Deployment,
) -> None:
    with admin_client(deployment, Role.AUDITOR) as auditor:
        served = auditor.get("/v1/admin/keys/enclave-data-key").json()
        unserved = auditor.get("/v1/admin/keys/not-for-kms").json()
    assert (served["kms_alias"], served["exposure"]) == ("alias/enclave-data-key", "broker-memory")
    assert unserved["kms_alias"] is None


async def test_deletion_refuses_kms_use_at_once_and_destruction_ends_the_key(
    deployment: Deployment, kms: Any
) -> None:
    name = "doomed-kms-key"
    _seed_key(deployment, name, {"insecure_allow_unattested": True}, "broker-memory")
    # Each call differs (its context): boto3 signs identical calls alike (a replay).
    blob = kms.encrypt(KeyId=f"alias/{name}", Plaintext=b"kept", EncryptionContext={"n": "0"})[
        "CiphertextBlob"
    ]
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        scheduled = custodian.put(f"/v1/admin/keys/{name}/deletion", json={"pending_days": 7})
    assert scheduled.status_code == 200, scheduled.text

    with pytest.raises(kms.exceptions.KMSInvalidStateException) as pending:
        kms.encrypt(KeyId=name, Plaintext=b"x", EncryptionContext={"n": "1"})
    assert pending.value.response["Error"]["Message"] == f"key {name} is pending deletion"
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"n": "0"})
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "key-disabled")
    described = kms.describe_key(KeyId=name)["KeyMetadata"]
    assert (described["KeyState"], described["Enabled"]) == ("PendingDeletion", False)

    # Cancelled, the key decrypts again. (The three decrypts name the key differently: the
    # same signed request twice in a second would be a replay.)
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        assert custodian.delete(f"/v1/admin/keys/{name}/deletion").status_code == 200
    opened = kms.decrypt(CiphertextBlob=blob, KeyId=name, EncryptionContext={"n": "0"})
    assert opened["Plaintext"] == b"kept"
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        again = custodian.put(f"/v1/admin/keys/{name}/deletion", json={"pending_days": 7})
    assert again.status_code == 200, again.text

    assert await destroy_due_keys(deployment.db, utcnow() + timedelta(days=8)) == [name]
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.decrypt(CiphertextBlob=blob, KeyId=f"alias/{name}", EncryptionContext={"n": "0"})
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId=name, Plaintext=b"x", EncryptionContext={"n": "2"})
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=f"alias/{name}")
    # A Limit of its own: boto3 signs identical calls alike, and a ListKeys of another test in
    # the same second would make this one a replay.
    assert name not in {key["KeyId"] for key in kms.list_keys(Limit=999)["Keys"]}
    with admin_client(deployment, Role.AUDITOR) as auditor:
        assert auditor.get(f"/v1/admin/keys/{name}").json()["kms_alias"] is None


# --- SigV4 --------------------------------------------------------------------------------


async def test_wrong_secret_unknown_and_revoked_access_keys(
    deployment: Deployment, caller: dict[str, str]
) -> None:
    wrong = _kms(deployment, caller, secret="x" * 40)
    with pytest.raises(ClientError) as caught:
        wrong.generate_random(NumberOfBytes=8)
    assert _error(caught) == "InvalidSignatureException"
    unknown = _kms(deployment, {"access_key_id": "KB" + "A" * 18, "secret_access_key": "y" * 40})
    with pytest.raises(ClientError) as caught:
        unknown.generate_random(NumberOfBytes=8)
    assert _error(caught) == "UnrecognizedClientException"

    short_lived = _access_key(deployment, "short-lived")
    client = _kms(deployment, short_lived)
    assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    with admin_client(deployment, Role.ADMIN) as admin:
        revoked = admin.delete(f"/v1/admin/access-keys/{short_lived['access_key_id']}")
        assert revoked.status_code == 200, revoked.text
        listed = admin.get("/v1/admin/access-keys").json()["access_keys"]
    assert {k["name"]: k["revoked_at"] is not None for k in listed}["short-lived"] is True
    with pytest.raises(ClientError) as caught:
        client.generate_random(NumberOfBytes=8)
    assert _error(caught) == "UnrecognizedClientException"
    record = await last_audit(deployment, "kms")
    assert record["error"]["type"] == "access-key-revoked"
    assert "secret" not in str(record).lower().replace("secret_access_key", "")


def test_clock_skew_beyond_the_bound(
    deployment: Deployment, caller: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _kms(deployment, caller)
    stale = utcnow().replace(tzinfo=None) - timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale)
    with pytest.raises(ClientError) as caught:
        client.generate_random(NumberOfBytes=8)
    assert _error(caught) == "InvalidSignatureException"
    assert "Signature expired" in caught.value.response["Error"]["Message"]
    within = utcnow().replace(tzinfo=None) - timedelta(minutes=4)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: within)
    assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8


def _capture(client: Any) -> dict[str, Any]:
    """What the next request of ``client`` is, as signed; it is not sent (a canned answer
    ends the call)."""
    seen: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> AWSResponse:
        seen.update(url=request.url, headers=dict(request.headers), body=request.body)
        return AWSResponse(request.url, 200, {}, _CannedBody())

    client.meta.events.register_first("before-send.kms.*", capture)
    return seen


class _CannedBody:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b'{"Plaintext": "AAAAAAAAAAA="}'


async def test_replay_and_tampered_signed_header(
    deployment: Deployment, caller: dict[str, str]
) -> None:
    client = _kms(deployment, caller)
    seen = _capture(client)
    client.generate_random(NumberOfBytes=8)  # signed by boto3, captured, not sent
    headers = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in seen["headers"].items()
    }
    body = seen["body"] if isinstance(seen["body"], bytes) else seen["body"].encode()
    async with httpx.AsyncClient() as http:
        first = await http.post(seen["url"], headers=headers, content=body)
        assert first.status_code == 200, first.text
        assert len(base64.b64decode(first.json()["Plaintext"])) == 8
        replay = await http.post(seen["url"], headers=headers, content=body)
        assert replay.status_code == 400
        assert replay.json()["__type"] == "InvalidSignatureException"
        assert "accepted before" in replay.json()["message"]
        tampered = dict(headers, **{"X-Amz-Target": "TrentService.GenerateDataKey"})
        answer = await http.post(seen["url"], headers=tampered, content=body)
        assert answer.json()["__type"] == "InvalidSignatureException"
        changed = await http.post(seen["url"], headers=headers, content=body.replace(b"8", b"9"))
        assert changed.json()["__type"] == "InvalidSignatureException"
        unsigned = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        answer = await http.post(seen["url"], headers=unsigned, content=body)
        assert answer.json()["__type"] == "IncompleteSignatureException"
    record = await last_audit(deployment, "kms")
    assert record["error"]["type"] == "signature-replayed"
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") is None


# --- the AWS SDK for JavaScript ------------------------------------------------------------

JS_SOURCE = Path(__file__).resolve().parent / "kms_js"
#: Where the JavaScript SDK is installed once (git ignores .keybroker*).
JS_INSTALL = Path(__file__).resolve().parents[2] / ".keybroker-npm"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.fixture(scope="module")
def js_round_trip() -> Path:
    """roundtrip.mjs next to an installed @aws-sdk/client-kms; skips where that cannot be."""
    if NODE is None or NPM is None:
        pytest.skip(
            "node and npm are not installed: the @aws-sdk/client-kms round trip needs them "
            "(optional; nothing else depends on npm)"
        )
    manifest = (JS_SOURCE / "package.json").read_bytes()
    installed = JS_INSTALL / "package.json"
    sdk = JS_INSTALL / "node_modules" / "@aws-sdk" / "client-kms"
    if not sdk.is_dir() or not installed.is_file() or installed.read_bytes() != manifest:
        JS_INSTALL.mkdir(exist_ok=True)
        installed.write_bytes(manifest)
        done = subprocess.run(
            [NPM, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_INSTALL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            pytest.skip(f"npm could not install @aws-sdk/client-kms (no registry?): {last}")
    script = JS_INSTALL / "roundtrip.mjs"  # beside node_modules, where node resolves imports
    script.write_bytes((JS_SOURCE / "roundtrip.mjs").read_bytes())
    return script


def _node(script: Path, request: dict[str, Any]) -> Any:
    """Run ``script`` with ``request`` as JSON on stdin; its stdout read as JSON."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(OPENSSL is None, reason="openssl (Debian package) is not installed")
async def test_the_javascript_sdk_round_trip(
    deployment: Deployment,
    caller: dict[str, str],
    enclave: Enclave,
    js_round_trip: Path,
    tmp_path: Path,
) -> None:
    """@aws-sdk/client-kms signs nine headers (boto3 four): Encrypt to the alias, Decrypt
    with the enclave's document as Recipient, the debug document refused."""
    secret = b"a secret sent by the JavaScript SDK"
    request = {
        "endpoint": deployment.base,
        "accessKeyId": caller["access_key_id"],
        "secretAccessKey": caller["secret_access_key"],
        "keyId": "alias/enclave-data-key",
        "plaintext": base64.b64encode(secret).decode(),
        "context": {"sdk": "javascript"},
        "document": base64.b64encode(enclave.document()).decode(),
        "debugDocument": base64.b64encode(enclave.document(debug=True)).decode(),
    }
    answer = _node(js_round_trip, request)
    assert answer["keyId"].endswith(":key/enclave-data-key")
    assert answer["plaintextReturned"] is False
    envelope = base64.b64decode(answer["ciphertextForRecipient"])
    assert enclave.open(envelope, tmp_path) == secret
    assert answer["refused"]["name"] == "AccessDeniedException"
    assert "debug" in answer["refused"]["message"]
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["operation"]) == ("deny", "Decrypt")
    assert record["recipient"]["claims"]["debug"] is True
