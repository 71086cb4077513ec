"""``/metrics`` of a real broker (uvicorn on loopback, PostgreSQL, SoftHSM) after guests
attested and were released a key, refused by its policy and refused an unknown key."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.settings import Settings
from broker.simulate.guests import SimulatedSnp
from tests.integration.release_support import (
    Deployment,
    approved_guest,
    denied,
    fetch,
    one_kit_deployment,
    seed,
    snp_policy,
)
from tests.integration.server import broker_process

pytestmark = pytest.mark.integration

SECRET = os.urandom(32)


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    async with one_kit_deployment(tmp_path_factory.mktemp("metrics"), softhsm) as running:
        yield running


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_decisions_timings_and_the_pool_after_real_releases(deployment: Deployment) -> None:
    seed(deployment, "metered", SECRET, snp_policy("metered-policy", "insecure-test-kit-a"))
    assert await fetch(deployment, "metered", approved_guest(deployment)) == SECRET
    other_image = hashlib.sha384(b"another image").digest()
    stranger = SimulatedSnp(deployment.kits["kit-a"], measurement=other_image)
    refused = await denied(deployment, "metered", stranger)
    assert refused.problem["type"].endswith("policy-denied")
    unknown = await denied(deployment, "no-such-key", approved_guest(deployment))
    assert unknown.problem["type"].endswith("key-not-found")

    async with httpx.AsyncClient(base_url=deployment.base) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    text = answer.text
    samples = _samples(text)
    decisions = "keybroker_decisions_total"
    release = {"kind": "release", "tee": "snp"}
    assert _value(samples, decisions, **release, key="metered", outcome="allow", reason="") == 1
    assert (
        _value(samples, decisions, **release, key="metered", outcome="deny", reason="policy-denied")
        == 1
    )
    # A name no key has is counted without it: guests cannot add series at will.
    assert (
        _value(samples, decisions, **release, key="", outcome="deny", reason="key-not-found") == 1
    )
    assert "no-such-key" not in text
    assert (
        _value(samples, decisions, kind="attest", key="", tee="snp", outcome="allow", reason="")
        == 3
    )

    count = "_count"
    assert (
        _value(samples, "keybroker_evidence_verification_seconds" + count, tee="snp", outcome="ok")
        == 3
    )
    assert _value(samples, "keybroker_policy_evaluation_seconds" + count) == 2
    assert _value(samples, "keybroker_hsm_envelope_seconds" + count, kind="native") == 1
    commits = "keybroker_db_commit_seconds" + count
    assert _value(samples, commits, statement="consume_nonce_and_append") == 3
    releases_committed = _value(samples, commits, statement="append") + _value(
        samples, commits, statement="append_if_current"
    )
    assert releases_committed >= 3

    assert _value(samples, "keybroker_hsm_sessions", state="size") == Settings().hsm_threads
    assert _value(samples, "keybroker_hsm_sessions", state="open") >= 1
    assert _value(samples, "keybroker_hsm_sessions", state="busy") == 0
    assert _value(samples, "keybroker_hsm_session_wait_seconds" + count) >= 1
    assert "# TYPE keybroker_collateral_items gauge" in text


def _scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A new connection each time: any worker may answer.
    with httpx.Client(base_url=base, headers={"Connection": "close"}) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    return _samples(answer.text)


def _pools(base: str) -> float | None:
    """The pools' summed size; None while a worker still starting drops the connection."""
    try:
        return _value(_scrape(base), "keybroker_hsm_sessions", state="size")
    except httpx.TransportError:
        return None


def test_every_worker_answers_for_all_of_them(
    state_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm, tmp_path: Path
) -> None:
    """``keybroker serve --workers 2``: each worker's pool counts in the sum once both are up,
    and a scrape counts the challenges both workers answered, whichever worker it reaches."""
    threads = Settings().hsm_threads
    with broker_process(state_dir, tmp_path / "broker.log", workers=2) as base:
        deadline = time.monotonic() + 60
        while _pools(base) != 2 * threads:
            assert time.monotonic() < deadline, "both workers never counted their pools"
            time.sleep(0.2)
        for _ in range(30):
            with httpx.Client(base_url=base, headers={"Connection": "close"}) as http:
                assert http.post("/v1/challenge", json={"tee": "snp"}).status_code == 201
        route = {"route": "/v1/challenge", "status": "201"}
        for _ in range(6):
            samples = _scrape(base)
            assert _value(samples, "keybroker_http_requests_total", **route) == 30
            assert _value(samples, "keybroker_hsm_sessions", state="size") == 2 * threads
