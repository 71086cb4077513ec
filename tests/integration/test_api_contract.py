"""The API is a contract a third-party tool can hold the broker to.

schemathesis (``--checks all``: status codes, content types, response schemas and headers,
positive data accepted, negative data refused, unsupported methods, Allow, auth enforced,
use after delete...) runs against a real broker (uvicorn on loopback, its own PostgreSQL,
the session's SoftHSM token) from the OpenAPI document that broker serves: once for the
guest endpoints without credentials, and once per admin role over the admin endpoints with
that role's token, the stateful phase following the links it infers between operations.
It must find nothing. Settings: ``schemathesis.toml`` beside this file.

Then the answers schemathesis found wrong once, asked directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from tests.integration.release_support import Deployment, running_deployment

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
ADMIN_PATHS = "^/v1/admin/"
# Retiring destroys a KEK on the token once this broker's database holds nothing sealed
# under it; the token is the session's, and other modules' databases may (docs/operations.md:
# one database per token). tests/integration/test_kek_lifecycle.py retires only its own KEKs.
# Each import wrapping key is an RSA-3072 key pair generated on the token: seconds each on a
# busy machine, past the run's 10 s answer timeout when schemathesis asks for several at
# once (tests/integration/test_byok.py holds that endpoint to its answers).
OUTSIDE_THE_RUN = "/retire$|^/v1/admin/import-wrapping-keys$"


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    directory = tmp_path_factory.mktemp("contract")
    # No collateral is fetched: a test never reaches a vendor service.
    async with running_deployment(directory, softhsm, (), {}, collateral_fetch=False) as running:
        yield running


@dataclass(frozen=True)
class Run:
    returncode: int
    report: str


def _start(deployment: Deployment, workdir: Path, *options: str) -> subprocess.Popen[str]:
    """schemathesis's CLI against the broker (the working directory takes its own files)."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{deployment.base}/v1/openapi.json",
        "--checks",
        "all",
        "--no-color",
        *options,
    ]
    if seed := os.environ.get("KEYBROKER_CONTRACT_SEED"):
        command += ["--seed", seed]
    if examples := os.environ.get("KEYBROKER_CONTRACT_EXAMPLES"):
        command += ["--max-examples", examples]
    workdir.mkdir()
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
    )


def _finish(process: subprocess.Popen[str]) -> Run:
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return Run(process.returncode, output)


@pytest.fixture(scope="module")
def runs(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """One schemathesis run for the guests and one per admin role. Each spends most of its
    time waiting for answers, so the runs go side by side, but for the admin's, which goes
    alone and last: its stateful phase may revoke the tokens it lists, and so pull another
    run's token from under it."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    token = deployment.tokens

    def admin_run(role: Role) -> subprocess.Popen[str]:
        return _start(
            deployment,
            workdir / role.value,
            "--include-path-regex",
            ADMIN_PATHS,
            "--exclude-path-regex",
            OUTSIDE_THE_RUN,
            "--header",
            f"Authorization: Bearer {token[role]}",
        )

    side_by_side = {
        "guest": _start(deployment, workdir / "guest", "--exclude-path-regex", ADMIN_PATHS),
        **{role.value: admin_run(role) for role in Role if role is not Role.ADMIN},
    }
    done = {name: _finish(process) for name, process in side_by_side.items()}
    done[Role.ADMIN.value] = _finish(admin_run(Role.ADMIN))
    return done


def _clean(run: Run) -> str:
    """The run's report, checked to hold no failure, and cases that really ran."""
    report = run.report
    assert run.returncode == 0, report
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases is not None, report
    assert int(cases[1]) > 0, report
    assert cases[1] == cases[2], report
    assert "failure" not in report.lower(), report
    return report


def test_schemathesis_finds_nothing_on_the_guest_endpoints(runs: dict[str, Run]) -> None:
    report = _clean(runs["guest"])
    assert re.search(r"Tested: 7\b", report), report  # health, metrics, OpenAPI, JWKS, guest


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
def test_schemathesis_finds_nothing_on_the_admin_endpoints_for_each_role(
    runs: dict[str, Run], role: Role
) -> None:
    report = _clean(runs[role.value])
    # Every admin operation but OUTSIDE_THE_RUN's two.
    assert re.search(r"Tested: 30\b", report), report
    # A run whose token stopped working would pass on 401s alone.
    assert "401 Unauthorized (" not in report, report
    stateful = re.search(r"Scenarios:\s+(\d+)", report)  # the stateful phase ran
    assert stateful is not None, report
    assert int(stateful[1]) > 0, report


# --- what schemathesis found, asked directly ------------------------------------------------

CHALLENGE = 'Bearer realm="keybroker"'
INVALID = 'Bearer realm="keybroker", error="invalid_token"'
UNKNOWN_ADMIN = "kbadm_" + "0" * 16 + "_" + "0" * 64


@pytest.mark.parametrize(
    ("method", "path", "authorization", "challenge"),
    [
        ("GET", "/v1/admin/keys", None, CHALLENGE),
        ("GET", "/v1/admin/keys", "Basic dXNlcjpwYXNz", CHALLENGE),
        ("GET", "/v1/admin/keys", "Bearer kbadm_zz", INVALID),
        ("GET", "/v1/admin/keys", f"Bearer {UNKNOWN_ADMIN}", INVALID),
        ("POST", "/v1/keys/disk-key/release", None, CHALLENGE),
        ("POST", "/v1/keys/disk-key/release", "Bearer a.b.c", INVALID),
    ],
)
def test_every_401_challenges_for_a_bearer_token(
    deployment: Deployment, method: str, path: str, authorization: str | None, challenge: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.request(method, path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"] == challenge


@pytest.mark.parametrize(
    ("path", "body", "role"),
    [
        ("/v1/challenge", rb'{"tee": "\ud800"}', None),
        (
            "/v1/attest",
            rb'{"tee": "snp", "evidence": "", "tee_pubkey": {}, "nonce": "",'
            rb' "collateral": {"\ud800": 1}}',
            None,
        ),
        (
            "/v1/admin/policies",
            rb'{"document": {"\u00e1\ud844\udedd": null, "\ud844": 1}}',
            Role.POLICY_AUTHOR,
        ),
    ],
)
def test_a_lone_surrogate_is_refused_with_a_problem(
    deployment: Deployment, path: str, body: bytes, role: Role | None
) -> None:
    # These were bare text/plain 500s: the problem that repeated the name could not be
    # written. The body reader now refuses the escape itself (I-JSON, RFC 7493 §2.1).
    headers = {"Content-Type": "application/json"}
    if role is not None:
        headers["Authorization"] = f"Bearer {deployment.tokens[role]}"
    with httpx.Client(base_url=deployment.base) as http:
        answer = http.post(path, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "https://keybroker.dev/problems/malformed-request"
    assert "lone surrogate" in answer.json()["detail"]


def test_an_unknown_path_and_options_on_the_real_server(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as http:
        unknown = http.get("/v1/nothing-here")
        options = http.options("/v1/keys/disk-key/release")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert options.status_code == 204
    assert options.headers["allow"] == "OPTIONS, POST"
