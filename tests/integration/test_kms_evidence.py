"""A KMS ``Recipient`` from guests that are not Nitro enclaves: the evidence bundle
(docs/kms.md, "Evidence bundles") sent by the real AWS SDK for Python (boto3) to a real
broker (uvicorn on loopback, PostgreSQL, SoftHSM).

A simulated SEV-SNP guest (the synthetic AMD kit) and a simulated TDX guest (the synthetic
Intel kit) bind an RSA key and a nonce from ``POST /v1/challenge`` into their reports, as
the native attestation does; every ``CiphertextForRecipient`` is opened with
``openssl cms -decrypt``. Each refusal is the KMS error type boto3 reads, and each decision
is in the audit log.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from keybroker_guest.evidence import EvidenceSource
from keybroker_guest.kms import FORMAT, bundle, recipient_evidence

from broker.cli import main as keybroker
from broker.localstate.softhsm import LocalSoftHsm
from broker.simulate.guests import SimulatedSnp, SimulatedTdx
from broker.simulate.intel import IntelKit
from broker.store.admin_tokens import Role
from broker.timeutil import utcnow
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    last_audit,
    running_deployment,
    save_snp_kit,
    snp_policy,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

SNP_ROOT = "insecure-test-amd"
INTEL_ROOT = "insecure-test-intel"


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kms-evidence")


@pytest.fixture(scope="module")
async def deployment(deployment_dir: Path, softhsm: LocalSoftHsm) -> AsyncIterator[Deployment]:
    snp = save_snp_kit(deployment_dir, "amd")
    intel = IntelKit.create(now=utcnow())
    intel.save(deployment_dir / "intel")
    (deployment_dir / "intel.pem").write_bytes(
        intel.certificates["root"].public_bytes(Encoding.PEM)
    )
    roots = (deployment_dir / "amd.pem", deployment_dir / "intel.pem")
    kits = {"snp": snp, "intel": deployment_dir / "intel"}
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        _seed(running, "snp-data-key", {**snp_policy("p-snp-data-key", SNP_ROOT), "kms": {}})
        tdx = {"tdx": {"signer": {"roots": [INTEL_ROOT]}}}
        _seed(running, "tdx-data-key", {**_policy("p-tdx-data-key", tdx), "kms": {}})
        yield running


def _policy(name: str, admit: dict[str, Any]) -> dict[str, Any]:
    return {"format": "keybroker-policy/1", "name": name, "version": 1, "admit": admit}


def _seed(deployment: Deployment, key: str, policy: dict[str, Any]) -> None:
    with admin_client(deployment, Role.KEY_CUSTODIAN) as custodian:
        answer = custodian.post("/v1/admin/keys", json={"name": key, "generate_length": 32})
        assert answer.status_code == 201, answer.text
        answer = custodian.put(f"/v1/admin/keys/{key}/exposure", json={"exposure": "broker-memory"})
        assert answer.status_code == 200, answer.text
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        published = author.post("/v1/admin/policies", json={"document": policy})
        assert published.status_code == 201, published.text
        bound = author.put(f"/v1/admin/keys/{key}/policy", json={"policy": policy["name"]})
        assert bound.status_code == 200, bound.text


@pytest.fixture(scope="module")
def kms(deployment: Deployment) -> Any:
    with admin_client(deployment, Role.ADMIN) as admin:
        answer = admin.post("/v1/admin/access-keys", json={"name": "guest-app"})
    assert answer.status_code == 201, answer.text
    key = answer.json()
    return boto3.client(
        "kms",
        endpoint_url=deployment.base,
        region_name="eu-west-1",
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )


class Guest:
    """A confidential guest's RSA key (as the KMS Recipient) and its evidence source."""

    def __init__(self, deployment: Deployment, source: EvidenceSource, directory: Path) -> None:
        self.deployment = deployment
        self.source = source
        self.key = rsa.generate_private_key(65537, 2048)
        self.key_file = directory / f"guest-{source.tee}-{id(self)}.pem"
        self.key_file.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.spki = _spki(self.key)

    def nonce(self, tee: str | None = None) -> str:
        answer = httpx.post(
            f"{self.deployment.base}/v1/challenge", json={"tee": tee or self.source.tee}
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["nonce"])

    def bundle(self, nonce: str | None = None) -> bytes:
        return recipient_evidence(self.source, self.spki, nonce or self.nonce())

    def open(self, envelope: bytes, directory: Path) -> bytes:
        source = directory / "envelope.der"
        source.write_bytes(envelope)
        command = ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER"]
        command += ["-in", str(source), "-inkey", str(self.key_file)]
        return subprocess.run(command, check=True, capture_output=True).stdout


def _spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _recipient(document: bytes) -> dict[str, Any]:
    return {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": document}


def _snp(deployment: Deployment, directory: Path, measurement: bytes = GOOD_MEASUREMENT) -> Guest:
    return Guest(deployment, SimulatedSnp(deployment.kits["snp"], measurement), directory)


def _refused(call: Any) -> tuple[str, str]:
    """The KMS error type and message of a refused call."""
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


async def _denial(deployment: Deployment, kind: str) -> str:
    record = await last_audit(deployment, "kms")
    assert record["decision"] == "deny"
    assert record["recipient"]["tee"] == kind
    return str(record["error"]["type"])


# --- the round trips ---------------------------------------------------------------------


async def test_snp_guest_decrypts_to_its_attested_key(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = _snp(deployment, tmp_path)
    secret = b"the disk passphrase of the SNP guest"
    blob = kms.encrypt(KeyId="alias/snp-data-key", Plaintext=secret)["CiphertextBlob"]
    document = guest.bundle()
    assert document.startswith(b"{")
    assert json.loads(document)["format"] == FORMAT

    answer = kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(document))
    assert "Plaintext" not in answer
    assert guest.open(answer["CiphertextForRecipient"], tmp_path) == secret

    attest = await last_audit(deployment, "attest")
    assert (attest["decision"], attest["protocol"], attest["tee"]) == ("allow", "kms", "snp")
    assert attest["binding"] == {"rule": "sha384"}  # the guest client's default hash
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["operation"]) == ("allow", "Decrypt")
    assert record["plaintext_to"] == "recipient"
    assert record["recipient"]["tee"] == "snp"
    assert record["recipient"]["evidence_sha256"] == attest["evidence_sha256"]
    assert record["recipient"]["claims"]["measurement"] == GOOD_MEASUREMENT.hex()
    assert record["policy"]["name"] == "p-snp-data-key"


async def test_tdx_guest_generates_a_data_key(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = Guest(deployment, SimulatedTdx(deployment.kits["intel"]), tmp_path)
    answer = kms.generate_data_key(
        KeyId="tdx-data-key", KeySpec="AES_256", Recipient=_recipient(guest.bundle())
    )
    assert "Plaintext" not in answer
    data_key = guest.open(answer["CiphertextForRecipient"], tmp_path)
    assert len(data_key) == 32
    again = kms.decrypt(
        CiphertextBlob=answer["CiphertextBlob"], Recipient=_recipient(guest.bundle())
    )
    assert guest.open(again["CiphertextForRecipient"], tmp_path) == data_key
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["recipient"]["tee"]) == ("allow", "tdx")
    assert record["recipient"]["binding"]["rule"] in ("sha384", "sha512")


async def test_the_guest_command_writes_the_bundle(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = _snp(deployment, tmp_path)
    public = tmp_path / "guest.pub.pem"
    public.write_bytes(
        guest.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = tmp_path / "guest.bundle"
    kit = deployment.kits["snp"]
    argv = ["guest", "evidence", "--tee", "snp", "--simulate", "--kit", str(kit)]
    argv += ["--public-key", str(public), "--nonce", guest.nonce(), "--out", str(out)]
    assert keybroker(argv) == 0
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"from the command")["CiphertextBlob"]
    # The simulated guest's measurement is the demo's, which this policy does not admit: the
    # bundle verifies, binds, and the policy decides.
    code, message = _refused(
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(out.read_bytes()))
    )
    assert code == "AccessDeniedException", message
    assert await _denial(deployment, "snp") == "policy-denied"
    assert (await last_audit(deployment, "attest"))["decision"] == "allow"

    assert keybroker([*argv[:-6], "--public-key", str(public), "--out", str(out)]) == 2


# --- refusals ----------------------------------------------------------------------------


async def test_a_nonce_is_consumed_once(deployment: Deployment, kms: Any, tmp_path: Path) -> None:
    guest = _snp(deployment, tmp_path)
    document = guest.bundle()
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"once")["CiphertextBlob"]
    kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(document))
    # Another operation, so that boto3's signature differs from the accepted one's.
    code, message = _refused(
        lambda: kms.generate_data_key(
            KeyId="snp-data-key", NumberOfBytes=32, Recipient=_recipient(document)
        )
    )
    assert code == "AccessDeniedException"
    assert "nonce was already used" in message
    assert await _denial(deployment, "snp") == "nonce-replayed"

    # On another worker (or replica) the nonce is not remembered: the database refuses it,
    # after the evidence verified, and the refusal is audited.
    deployment.app.state.kms.release.consumed.clear()  # type: ignore[attr-defined]
    code, message = _refused(
        lambda: kms.generate_data_key(
            KeyId="snp-data-key", KeySpec="AES_128", Recipient=_recipient(document)
        )
    )
    assert (code, "nonce was already used" in message) == ("AccessDeniedException", True)
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "nonce-replayed")
    assert record["recipient"]["claims"]["measurement"] == GOOD_MEASUREMENT.hex()


async def test_wrong_nonces_are_refused(deployment: Deployment, kms: Any, tmp_path: Path) -> None:
    guest = _snp(deployment, tmp_path)
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"nonce")["CiphertextBlob"]

    issued_for_tdx = guest.bundle(guest.nonce("tdx"))
    code, message = _refused(
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(issued_for_tdx))
    )
    assert (code, "not issued by this broker for tee 'snp'" in message) == (
        "AccessDeniedException",
        True,
    )
    assert await _denial(deployment, "snp") == "nonce-unknown"

    # The report binds one nonce, the bundle names another (also issued for snp).
    other = json.loads(guest.bundle())
    other["nonce"] = guest.nonce()
    swapped = json.dumps(other).encode()
    code, message = _refused(
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(swapped))
    )
    assert code == "AccessDeniedException"
    assert "REPORT_DATA" in message
    assert await _denial(deployment, "snp") == "binding-mismatch"


async def test_a_key_the_evidence_does_not_bind_is_refused(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = _snp(deployment, tmp_path)
    document = json.loads(guest.bundle())
    intruder = _spki(rsa.generate_private_key(65537, 2048))
    document["public_key"] = base64.b64encode(intruder).decode()
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"bound")["CiphertextBlob"]
    code, message = _refused(
        lambda: kms.decrypt(
            CiphertextBlob=blob, Recipient=_recipient(json.dumps(document).encode())
        )
    )
    assert code == "AccessDeniedException"
    assert "REPORT_DATA" in message
    assert await _denial(deployment, "snp") == "binding-mismatch"


async def test_the_policy_decides_on_the_guests_claims(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = _snp(deployment, tmp_path, measurement=bytes(48))
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"policy")["CiphertextBlob"]
    code, _ = _refused(
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(guest.bundle()))
    )
    assert code == "AccessDeniedException"
    record = await last_audit(deployment, "kms")
    assert (record["decision"], record["error"]["type"]) == ("deny", "policy-denied")
    assert record["recipient"]["claims"]["measurement"] == bytes(48).hex()
    # The SNP section decides; the TDX key's policy has none for an SNP guest.
    code, _ = _refused(
        lambda: kms.generate_data_key(
            KeyId="tdx-data-key",
            NumberOfBytes=16,
            Recipient=_recipient(_snp(deployment, tmp_path).bundle()),
        )
    )
    assert code == "AccessDeniedException"
    assert await _denial(deployment, "snp") == "policy-denied"


async def test_malformed_bundles_are_validation_errors(
    deployment: Deployment, kms: Any, tmp_path: Path
) -> None:
    guest = _snp(deployment, tmp_path)
    nonce = guest.nonce()
    good = json.loads(bundle("snp", b"report", guest.spki, nonce))
    blob = kms.encrypt(KeyId="snp-data-key", Plaintext=b"shape")["CiphertextBlob"]
    cases = {
        b"{not json": "is not a JSON object",
        json.dumps({**good, "format": "other/1"}).encode(): "format is not",
        json.dumps({**good, "tee": "z80"}).encode(): "tee 'z80' is not one of",
        json.dumps({**good, "extra": 1}).encode(): "has no member extra",
        json.dumps({**good, "evidence": "***"}).encode(): "'evidence' is not base64",
        json.dumps({k: v for k, v in good.items() if k != "nonce"}).encode(): "'nonce'",
    }
    for document, expected in cases.items():
        code, message = _refused(
            lambda document=document: kms.decrypt(  # type: ignore[misc]
                CiphertextBlob=blob, Recipient=_recipient(document)
            )
        )
        assert (code, expected in message) == ("ValidationException", True), message

    small = _spki(rsa.generate_private_key(65537, 1024))  # noqa: S505 (refused, as it must be)
    document = bundle("snp", b"report", small, nonce)
    code, message = _refused(
        lambda: kms.decrypt(CiphertextBlob=blob, Recipient=_recipient(document))
    )
    assert (code, "RSA key of 2048, 3072, 4096 bits" in message) == ("ValidationException", True)
    assert await _denial(deployment, "snp") == "public-key-invalid"
