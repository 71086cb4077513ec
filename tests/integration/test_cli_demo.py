"""The command line against real services: the demo a newcomer runs, and the admin commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from broker.cli import main
from broker.localstate import demo
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.settings import Settings
from broker.timeutil import utcnow
from tests.integration.server import running_broker

pytestmark = pytest.mark.integration


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
    assert settings.insecure_test_roots[-1].name == "demo-snp.pem"
    with running_broker(settings) as base:
        status = main(
            [
                "guest",
                "fetch",
                "--url",
                base,
                "--key",
                demo.DEMO_KEY,
                "--tee",
                "snp",
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

        assert main(["audit", "tail", "-n", "2"]) == 0
        tail = capsysbinary.readouterr().out.decode()
        assert "attest  allow snp" in tail
        assert "release allow disk-key" in tail
        assert "policy=insecure-demo-simulated-snp@v1" in tail

        assert main(["audit", "verify"]) == 0
        assert b"audit chain intact" in capsysbinary.readouterr().out


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
    assert main(["keys", "list"]) == 0
    listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    assert listed["cli-key"]["version"] == 2

    assert main(["admin", "token", "create", "--role", "auditor", "--name", "ops"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("kbadm_")
    assert printed.out.strip() not in printed.err

    assert main(["keys", "create", "cli-key-2"]) == 2  # neither --secret-file nor --generate
    assert main(["audit", "tail", "--json", "-n", "3"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in records] == ["admin", "admin", "admin"]
    ages = [utcnow() - datetime.fromisoformat(r["at"]) for r in records]
    assert all(timedelta(0) <= age < timedelta(minutes=5) for age in ages), ages
    actions = [json.loads(r["record"])["action"] for r in records]
    assert actions == ["key.bind_policy", "key.disable", "token.create"]  # oldest first
