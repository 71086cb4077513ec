"""Replaying a draft over real history, and diffing published versions: a broker over real
HTTP, PostgreSQL and SoftHSM serves simulated guests, then the admin API and the CLI are
asked what a draft would have changed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.cli import main
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

SECRET = b"r" * 32
OTHER_MEASUREMENT = b"\x07" * 48


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replay")


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    kits = {name: save_snp_kit(deployment_dir, name) for name in ("kit-a", "kit-b")}
    roots = (deployment_dir / "kit-a.pem", deployment_dir / "kit-b.pem")
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        yield running


def _both_kits(name: str, version: int = 1) -> dict[str, Any]:
    document = snp_policy(name, "insecure-test-kit-a", version=version)
    document["admit"]["snp"]["signer"]["roots"].append("insecure-test-kit-b")
    return document


@pytest.fixture(scope="module")
async def history(deployment: Deployment) -> dict[str, list[str]]:
    """Three releases to kit-a, two to kit-b, and one denial of another image."""
    seed(deployment, "replayed", SECRET, _both_kits("replay-policy"))
    served: dict[str, list[str]] = {"kit-a": [], "kit-b": [], "denied": []}
    for kit, count in (("kit-a", 3), ("kit-b", 2)):
        for _ in range(count):
            source = SimulatedSnp(deployment.kits[kit], measurement=GOOD_MEASUREMENT)
            assert await fetch(deployment, "replayed", source) == SECRET
            served[kit].append(await _last_request_id(deployment))
    other = SimulatedSnp(deployment.kits["kit-a"], measurement=OTHER_MEASUREMENT)
    await denied(deployment, "replayed", other)
    served["denied"].append(await _last_request_id(deployment))
    return served


async def _last_request_id(deployment: Deployment) -> str:
    async with deployment.db.connection() as conn:
        value: str = await conn.fetchval(
            "SELECT request_id FROM audit_log WHERE kind = 'release' ORDER BY seq DESC LIMIT 1"
        )
    return value


def _replay(deployment: Deployment, role: Role, body: dict[str, Any]) -> Any:
    with admin_client(deployment, role) as client:
        return client.post("/v1/admin/policies/replay-policy/replay", json=body)


async def test_a_draft_that_drops_a_root_would_deny_that_chips_releases(
    deployment: Deployment, history: dict[str, list[str]]
) -> None:
    draft = snp_policy("replay-policy", "insecure-test-kit-a", version=2)
    answer = _replay(deployment, Role.POLICY_AUTHOR, {"document": draft, "key": "replayed"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["releases_replayed"] == 6
    assert report["unchanged"] == {"allow": 3, "deny": 1}
    assert report["newly_allowed"] == {"total": 0, "by_clause": []}
    (group,) = report["newly_denied"]["by_clause"]
    assert group["rule"] == "$.admit.snp.signer.roots"
    assert (group["count"], group["sample_request_ids"]) == (2, history["kit-b"])


async def test_a_draft_that_accepts_the_other_image_would_allow_the_denial(
    deployment: Deployment, history: dict[str, list[str]]
) -> None:
    draft = _both_kits("replay-policy", version=2)
    draft["reference_values"]["approved"]["values"].append({"measurement": OTHER_MEASUREMENT.hex()})
    report = _replay(deployment, Role.AUDITOR, {"document": draft, "since": "1d"}).json()
    assert report["key"] is None
    assert report["newly_allowed"]["by_clause"] == [
        {
            "rule": "$.admit.snp.reference_values",
            "count": 1,
            "sample_request_ids": history["denied"],
        }
    ]
    assert report["newly_denied"]["total"] == 0


async def test_a_draft_with_limits_is_replayed_with_its_counters(
    deployment: Deployment, history: dict[str, list[str]]
) -> None:
    draft = _both_kits("replay-policy", version=2)
    draft["limits"] = {"pin_to_first_instance": True}
    report = _replay(deployment, Role.POLICY_AUTHOR, {"document": draft}).json()
    (group,) = report["newly_denied"]["by_clause"]
    assert group["rule"] == "$.limits.pin_to_first_instance"
    assert group["sample_request_ids"] == history["kit-b"]


async def test_replay_refusals(deployment: Deployment, history: dict[str, list[str]]) -> None:
    draft = _both_kits("replay-policy", version=2)
    forbidden = _replay(deployment, Role.KEY_CUSTODIAN, {"document": draft})
    assert forbidden.status_code == 403
    other = _replay(deployment, Role.AUDITOR, {"document": _both_kits("another")})
    assert other.status_code == 422
    assert other.json()["detail"] == "the draft is policy another, not replay-policy"
    window = _replay(deployment, Role.AUDITOR, {"document": draft, "since": "30 days"})
    assert window.status_code == 400
    assert "since must be a whole number and a unit" in window.json()["detail"]
    invalid = _replay(deployment, Role.AUDITOR, {"document": {"name": "replay-policy"}})
    assert invalid.status_code == 422


async def test_diff_of_two_published_versions(
    deployment: Deployment, history: dict[str, list[str]]
) -> None:
    looser = _both_kits("replay-policy", version=2)
    looser["admit"]["snp"]["minimum_tcb"]["snp"] = 1
    looser["admit"]["snp"]["require"].append({"claim": "policy.debug", "equals": False})
    looser["admit"]["snp"]["signer"]["roots"].append("insecure-test-kit-c")
    with admin_client(deployment, Role.POLICY_AUTHOR) as author:
        assert author.post("/v1/admin/policies", json={"document": looser}).status_code == 201
    with admin_client(deployment, Role.AUDITOR) as auditor:
        answer = auditor.get("/v1/admin/policies/replay-policy/diff?from=1&to=2")
        missing = auditor.get("/v1/admin/policies/replay-policy/diff?from=1&to=9")
        bare = auditor.get("/v1/admin/policies/replay-policy/diff?from=1")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert [(d["change"], d["rule"]) for d in result["differences"]] == [
        ("loosened", "$.admit.snp.signer.roots"),
        ("tightened", "$.admit.snp.minimum_tcb.snp"),
        ("added", "$.admit.snp.require[1]"),
    ]
    assert (result["summary"]["loosened"], result["summary"]["tightened"]) == (1, 1)
    assert missing.status_code == 404
    assert bare.status_code == 400


@pytest.fixture
def operator_shell(
    deployment: Deployment,
    deployment_dir: Path,
    softhsm: LocalSoftHsm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an operator's shell would export for the CLI to find the broker's database."""
    for name, value in {
        "KEYBROKER_STATE_DIR": str(deployment_dir),
        "KEYBROKER_DATABASE_URL": deployment.cluster.dsn(),
        "KEYBROKER_TOKEN_LABEL": softhsm.token_label,
        "KEYBROKER_USER_PIN_FILE": str(softhsm.user_pin_file),
        "KEYBROKER_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("operator_shell")
async def test_the_cli_replays_a_draft_file(
    history: dict[str, list[str]], deployment_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = deployment_dir / "draft.yaml"
    draft.write_text(yaml.safe_dump(snp_policy("replay-policy", "insecure-test-kit-a", 3)))
    # The CLI runs its own event loop, as it does for an operator: in a thread of its own.
    assert await _cli("policy", "replay", str(draft), "--key", "replayed", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["newly_denied"]["by_clause"][0]["sample_request_ids"] == history["kit-b"]
    assert await _cli("policy", "replay", str(draft), "--since", "2h") == 0
    text = capsys.readouterr().out
    assert "would now be denied: 2" in text
    assert "$.admit.snp.signer.roots" in text
    assert await _cli("policy", "diff", "replay-policy", "1", "2") == 0
    assert "loosened  $.admit.snp.signer.roots" in capsys.readouterr().out
    broken = deployment_dir / "broken.yaml"
    broken.write_text("format: keybroker-policy/1\nname: x\n")
    assert await _cli("policy", "replay", str(broken)) == 2


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def test_the_replay_benchmark_runs(tmp_path: Path) -> None:
    """``python -m benchmarks.policy_replay`` at toy size: its shape, never its timing."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.policy_replay"),
            *("--records", "400", "--rounds", "1", "--state-dir", str(tmp_path / "bench")),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["records"], figures["releases_replayed"]) == (400, 200)
    assert figures["newly_denied"] == 200
