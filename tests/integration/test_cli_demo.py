"""The command line against real services: the demo a newcomer runs, and the admin commands."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.cli import demo, main
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.settings import Settings
from broker.simulate.guests import DEMO_MEASUREMENT
from broker.store.sqlfiles import MIGRATIONS
from broker.timeutil import utcnow
from tests.integration.conftest import create_database
from tests.integration.server import running_broker
from tests.kbs_client.client import KbsClient, SnpGuest

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo_cluster(demo_state: Path) -> Iterator[LocalPostgres]:
    cluster = LocalPostgres(demo_state)
    cluster.up()
    yield cluster
    cluster.stop()


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch,
    demo_state: Path,
    demo_cluster: LocalPostgres,
    softhsm: LocalSoftHsm,
) -> Settings:
    """What an operator's shell would export; the CLI reads it through load_settings."""
    for name, value in {
        "KEYBROKER_STATE_DIR": str(demo_state),
        "KEYBROKER_DATABASE_URL": demo_cluster.dsn(),
        "KEYBROKER_TOKEN_LABEL": softhsm.token_label,
        "KEYBROKER_USER_PIN_FILE": str(softhsm.user_pin_file),
        "KEYBROKER_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings(
        state_dir=demo_state,
        database_url=Secret(demo_cluster.dsn()),
        token_label=softhsm.token_label,
        user_pin_file=softhsm.user_pin_file,
        log_format="json",
    )


def test_demo_releases_its_key_to_the_simulated_guest_and_audits_it(
    environment: Settings, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    # The CLI runs its own event loop, as it does for an operator: this test is synchronous.
    settings = demo.prepare(environment)
    out = environment.state_dir / "released.bin"
    asyncio.run(demo.seed(settings))
    asyncio.run(demo.seed(settings))  # a second `make run` reuses the state
    assert [root.name for root in settings.insecure_test_roots[-2:]] == [
        "demo-snp.pem",
        "demo-nitro.pem",
    ]
    with running_broker(settings) as base:
        # snp: the kit's report; snp-vtpm: swtpm behind a paravisor signed by the same kit
        for tee in ("snp", "snp-vtpm"):
            status = main(
                [
                    "guest",
                    "fetch",
                    "--url",
                    base,
                    "--key",
                    demo.DEMO_KEY,
                    "--tee",
                    tee,
                    "--simulate",
                    "--state-dir",
                    str(settings.state_dir),
                    "--out",
                    str(out),
                ]
            )
            assert status == 0, capsysbinary.readouterr().err
            assert out.read_bytes().startswith(b"keybroker demo disk key ")
            assert out.stat().st_mode & 0o777 == 0o600

            assert main(["audit", "tail", "-n", "1"]) == 0
            tail = capsysbinary.readouterr().out.decode()
            # One request, one record for the attestation and the release (the default flow).
            assert "release allow disk-key" in tail
            assert f"tee={tee} flow=one-request version=1" in tail
            assert "policy=insecure-demo-simulated-snp@v1" in tail

        assert main(["audit", "verify"]) == 0
        assert b"audit chain intact" in capsysbinary.readouterr().out


@pytest.mark.skipif(OPENSSL is None, reason="openssl (Debian package) is not installed")
def test_an_enclave_application_gets_the_demo_kms_key(
    environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/kms.md on `make run`'s demo: an access key from `admin access-key create`, the
    simulated enclave's documents from `guest evidence`, then boto3 encrypts to
    alias/enclave-data-key and decrypts with the production document as Recipient, which
    `openssl cms -decrypt` opens with the enclave's key; the debug document is refused with
    AccessDeniedException, and the refusal is in the audit trail."""
    settings = demo.prepare(environment)
    asyncio.run(demo.seed(settings))
    capsys.readouterr()
    assert main(["admin", "access-key", "create", "--name", "demo-app"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # exactly one JSON object on stdout
    created = json.loads(out)
    assert sorted(created) == ["access_key_id", "secret_access_key"]
    assert created["secret_access_key"] not in err

    enclave = rsa.generate_private_key(65537, 2048)  # what the Nitro SDK makes
    key_file, public_file = tmp_path / "enclave.pem", tmp_path / "enclave.pub.pem"
    key_file.write_bytes(enclave.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_file.write_bytes(
        enclave.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    documents = {}
    for mode, extra in (("production", []), ("debug", ["--debug"])):
        document = tmp_path / f"{mode}.doc"
        argv = ["guest", "evidence", "--tee", "nitro", "--simulate", "--public-key"]
        argv += [str(public_file), "--out", str(document), "--state-dir", str(settings.state_dir)]
        assert main([*argv, *extra]) == 0, capsys.readouterr().err
        assert f"simulated {mode}-mode Nitro attestation document" in capsys.readouterr().err
        documents[mode] = {
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            "AttestationDocument": document.read_bytes(),
        }

    secret = b"the enclave application's database password"
    with running_broker(settings) as base:
        kms = boto3.client(
            "kms",
            endpoint_url=base,
            region_name="eu-west-1",
            aws_access_key_id=created["access_key_id"],
            aws_secret_access_key=created["secret_access_key"],
            config=Config(retries={"max_attempts": 1}),
        )
        blob = kms.encrypt(KeyId=f"alias/{demo.KMS_KEY}", Plaintext=secret)["CiphertextBlob"]
        answer = kms.decrypt(CiphertextBlob=blob, Recipient=documents["production"])
        assert "Plaintext" not in answer
        envelope = tmp_path / "envelope.der"
        envelope.write_bytes(answer["CiphertextForRecipient"])
        assert OPENSSL is not None
        decrypt = ["cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(envelope)]
        opened = subprocess.run(
            [OPENSSL, *decrypt, "-inkey", str(key_file)],
            check=True,
            capture_output=True,
        )
        assert opened.stdout == secret

        with pytest.raises(ClientError) as caught:
            kms.decrypt(CiphertextBlob=blob, Recipient=documents["debug"])
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "debug" in caught.value.response["Error"]["Message"]

    capsys.readouterr()
    assert main(["audit", "tail", "-n", "1", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    record = entry["record"]  # served parsed, not as a JSON string
    assert (entry["kind"], entry["decision"], entry["key_name"]) == ("kms", "deny", demo.KMS_KEY)
    assert (record["operation"], record["error"]["type"]) == ("Decrypt", "policy-denied")
    assert record["recipient"]["claims"]["debug"] is True
    assert record["policy"]["name"] == "insecure-demo-simulated-nitro"


def test_a_kbs_client_fetches_the_demo_key(
    environment: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `make run` offers a Confidential Containers guest: auth, attest with a simulated
    SNP report bound as RCAR binds it, then resource default/key/disk-key, opened with the
    kbs-types AAD rule."""
    settings = demo.prepare(environment)
    asyncio.run(demo.seed(settings))
    guest = SnpGuest(demo.kit_dir(settings.state_dir), measurement=DEMO_MEASUREMENT)
    with running_broker(settings) as base, KbsClient(base) as client:
        secret = client.fetch(guest, demo.DEMO_KBS_PATH)
    assert secret.startswith(b"keybroker demo disk key ")
    capsys.readouterr()
    assert main(["audit", "tail", "-n", "1"]) == 0
    line = capsys.readouterr().out
    assert "release allow disk-key" in line
    assert "kbs=default/key/disk-key plaintext_in_broker" in line


def test_kbs_key_settings_commands(
    environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"k" * 32)
    assert main(["keys", "create", "cli-kbs", "--secret-file", str(secret)]) == 0
    assert json.loads(capsys.readouterr().out)["exposure"] == "hsm-only"
    assert main(["keys", "set-exposure", "cli-kbs", "broker-memory"]) == 0
    assert json.loads(capsys.readouterr().out)["exposure"] == "broker-memory"
    assert main(["keys", "set-kbs-path", "cli-kbs", "cli/key/one"]) == 0
    assert json.loads(capsys.readouterr().out)["kbs_path"] == "cli/key/one"
    assert main(["keys", "set-kbs-path", "cli-kbs", "--clear"]) == 0
    assert json.loads(capsys.readouterr().out)["kbs_path"] is None
    assert main(["keys", "set-kbs-path", "cli-kbs"]) == 2  # neither PATH nor --clear
    assert "give exactly one of PATH and --clear" in capsys.readouterr().err
    assert main(["keys", "set-kbs-path", "cli-kbs", "a/b"]) == 1
    assert "is not repository/type/tag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "set-exposure", "cli-kbs", "anywhere"])
    assert main(["audit", "tail", "--json", "-n", "3"]) == 0
    actions = [r["record"]["action"] for r in json.loads(capsys.readouterr().out)]
    assert actions == ["key.set_exposure", "key.set_kbs_path", "key.set_kbs_path"]


def test_key_policy_and_token_commands(
    environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"s" * 33)
    assert main(["keys", "create", "cli-key", "--secret-file", str(secret)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["name"], created["version"], created["secret_length"]) == ("cli-key", 1, 33)

    assert main(["keys", "rotate", "cli-key", "--generate", "48"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2

    assert main(["keys", "create", "cli-key", "--generate", "8"]) == 1
    assert "exists" in capsys.readouterr().err

    assert main(["policies", "publish", "policies/snp-production-disk-key.yaml"]) == 0
    published = json.loads(capsys.readouterr().out)
    assert published["name"] == "snp-production-disk-key"

    assert main(["keys", "bind", "cli-key", "--policy", "snp-production-disk-key", "--lock"]) == 0
    assert json.loads(capsys.readouterr().out)["locked"] is True
    assert main(["keys", "bind", "cli-key", "--policy", "snp-production-disk-key"]) == 1
    assert "locked" in capsys.readouterr().err

    assert main(["keys", "disable", "cli-key"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "disabled"
    assert main(["keys", "list", "--json"]) == 0
    listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    assert listed["cli-key"]["version"] == 2
    assert listed["cli-key"]["binding"]["locked"] is True  # a boolean, not "true"
    # By default, a table: a header, then one line a key.
    assert main(["keys", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "NAME",
        "VERSION",
        "STATE",
        "EXPOSURE",
        "POLICY",
        "KBS",
        "PATH",
        "DESTROY",
        "AFTER",
    ]
    (row,) = [line for line in rows if line.startswith("cli-key ")]
    assert row.split()[:5] == ["cli-key", "2", "disabled", "hsm-only", "snp-production-disk-key"]
    assert "(v1, locked)" in row  # locking pins the version in force

    assert main(["admin", "token", "create", "--role", "auditor", "--name", "ops"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("kbadm_")
    assert printed.out.strip() not in printed.err

    assert main(["keys", "create", "cli-key-2"]) == 2  # neither --secret-file nor --generate
    invalid = "tests/unit/policy/data/bad-policy.yaml"
    assert main(["policies", "publish", invalid]) == 2  # as `policy check` exits
    assert f"keybroker: {invalid}:7:7: error: " in capsys.readouterr().err
    assert main(["audit", "tail", "--json", "-n", "3"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in records] == ["admin", "admin", "admin"]
    ages = [utcnow() - datetime.fromisoformat(r["at"]) for r in records]
    assert all(timedelta(0) <= age < timedelta(minutes=5) for age in ages), ages
    actions = [r["record"]["action"] for r in records]
    assert actions == ["key.bind_policy", "key.disable", "token.create"]  # oldest first


@pytest.mark.parametrize("role", ["key-custodian", "policy-author"])
def test_the_cli_creates_the_tokens_the_admin_api_does_not(
    environment: Settings, capsys: pytest.CaptureFixture[str], role: str
) -> None:
    """Separation of duties: these roles are minted only by whoever holds the database and
    HSM credentials; the token then works over the API for its own duty."""
    assert main(["admin", "token", "create", "--role", role, "--name", f"cli-{role}"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("kbadm_")
    with running_broker(environment) as base, httpx.Client(base_url=base) as http:
        headers = {"Authorization": f"Bearer {token}"}
        if role == "key-custodian":
            name = f"cli-minted-{role}"
            created = http.post(
                "/v1/admin/keys", json={"name": name, "generate_length": 32}, headers=headers
            )
            assert created.status_code == 201, created.text
        else:
            listed = http.get("/v1/admin/policies", headers=headers)
            assert listed.status_code == 200, listed.text
        refused = http.post(
            "/v1/admin/tokens", json={"name": "x", "role": "auditor"}, headers=headers
        )
        assert refused.status_code == 403  # its own duty only


@pytest.fixture
def fresh_database(
    environment: Settings, demo_cluster: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> str:
    """An empty database in the demo cluster, which the CLI's settings now name."""
    dsn = asyncio.run(create_database(demo_cluster))
    monkeypatch.setenv("KEYBROKER_DATABASE_URL", dsn)
    return dsn


def test_db_migrate_applies_then_says_up_to_date(
    fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in MIGRATIONS)
    assert names.startswith("0001_foundation, 0002_release")
    assert main(["db", "migrate"]) == 0
    assert capsys.readouterr() == (f"applied: {names}\n", "")
    assert main(["db", "migrate"]) == 0
    assert capsys.readouterr() == ("schema is up to date\n", "")


def test_db_migrate_without_a_database_exits_1(
    environment: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEYBROKER_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{closed_port()}/x")
    assert main(["db", "migrate"]) == 1
    assert capsys.readouterr() == (
        "",
        "keybroker: cannot connect to PostgreSQL: ConnectionRefusedError\n",
    )


async def _tamper(dsn: str, statement: str) -> None:
    """What a superuser could do: switch the append-only trigger off, change, switch it on."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            await conn.execute(statement)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()


def test_audit_verify_exits_1_on_a_tampered_chain(
    fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("first", "second", "third"):
        assert main(["admin", "token", "create", "--role", "auditor", "--name", name]) == 0
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out == "audit chain intact: 3 records\n"

    asyncio.run(
        _tamper(
            fresh_database,
            "UPDATE audit_log SET record = replace(record, '\"second\"', '\"mallory\"') "
            "WHERE seq = 2",
        )
    )
    assert main(["audit", "verify"]) == 1
    assert capsys.readouterr() == (
        "audit chain BROKEN at record 2: hash does not match the record's content "
        "(1 record verified before it)\n",
        "",
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_guest_fetch_retries_an_unreachable_broker_then_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    argv = ["guest", "fetch", "--url", url, "--key", "k", "--tee", "snp", "--simulate"]
    assert main([*argv, "--kit", str(tmp_path), "--wait", "0"]) == 3
    assert capsys.readouterr() == (
        "",
        f"keybroker guest: cannot reach {url}: Connection refused (gave up after 1 attempt)\n",
    )
    # With a wait, each attempt is announced, with its growing delay, until the wait is over.
    assert main([*argv, "--kit", str(tmp_path), "--wait", "1.5"]) == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2
    retried = re.compile(rf"keybroker guest: cannot reach {url}: Connection refused; retrying in")
    assert all(retried.match(line) for line in lines[:-1]), lines
    assert re.fullmatch(
        rf"keybroker guest: cannot reach {url}: Connection refused "
        rf"\(gave up after {len(lines)} attempts\)",
        lines[-1],
    ), lines


def test_key_lifecycle_and_kek_commands(
    environment: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "cli-doomed", "--generate", "16"]) == 0
    capsys.readouterr()
    assert main(["keys", "show", "cli-doomed"]) == 0
    text = capsys.readouterr().out
    assert "state:" in text
    assert "kms alias:" in text
    assert "KEK" in text
    assert main(["keys", "show", "cli-doomed", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["versions"][0]["created_by"] == shown["created_by"]
    assert shown["created_by"].startswith("cli:")
    assert main(["keys", "delete", "cli-doomed", "--after", "6d"]) == 1
    assert "a deletion waits 7 to 30 days, not 6" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "delete", "cli-doomed", "--after", "seven"])
    assert "is not a number of days such as 7d" in capsys.readouterr().err
    assert main(["keys", "delete", "cli-doomed", "--after", "7d"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "pending-deletion"
    assert main(["keys", "destroy-due"]) == 0  # not due for a week
    assert json.loads(capsys.readouterr().out) == {"destroyed": []}
    assert main(["keys", "cancel-deletion", "cli-doomed"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "active"

    # The token is the session's: rotate and re-wrap, but retire nothing others may use.
    assert main(["kek", "rotate", "--rewrap"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["rewrap"]["kek_label"] == rotated["kek_label"]
    assert rotated["rewrap"]["remaining"] == 0
    assert main(["kek", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"] == rotated["kek_label"]
    sealing = {k["label"]: k["key_versions"] for k in status["keks"] if k["key_versions"]}
    assert list(sealing) == [rotated["kek_label"]]
    newest = int(rotated["kek_label"].rsplit("v", 1)[1])
    assert main(["kek", "retire", str(newest)]) == 1
    assert "is the current KEK; rotate first" in capsys.readouterr().err


def test_audit_commands(
    environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "cli-audited", "--generate", "8"]) == 0
    assert main(["keys", "disable", "cli-audited"]) == 0
    capsys.readouterr()
    assert main(["audit", "tail", "--json", "--key", "cli-audited"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["record"]["action"] for r in records] == ["key.create", "key.disable"]
    first = records[0]["seq"]
    assert main(["audit", "tail", "--json", "--key", "cli-audited", "--outcome", "deny"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    exported = tmp_path / "audit.jsonl"
    since = records[0]["at"]
    assert (
        main(["audit", "export", "--since", since, "--key", "cli-audited", "--out", str(exported)])
        == 0
    )
    assert "exported 2 records" in capsys.readouterr().err
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [first, first + 1]
    assert lines[0]["record"]["actor"].startswith("cli:")

    assert main(["audit", "export", "--format", "cef", "--key", "cli-audited"]) == 0
    cef = capsys.readouterr().out.splitlines()
    assert len(cef) == 2
    assert cef[0].startswith("CEF:0|keybroker|keybroker|")
    assert "|admin:key.create|admin key.create|3|" in cef[0]
    assert f"externalId={first} " in cef[0]
    assert "cs1Label=key cs1=cli-audited" in cef[0]

    assert main(["audit", "verify", "--since", since]) == 0
    report = capsys.readouterr().out
    assert report.startswith(f"audit chain intact since {since}: ")
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--since", "yesterday"])
