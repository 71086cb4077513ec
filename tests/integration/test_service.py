"""The service skeleton over real HTTP: health, readiness that follows PostgreSQL, metrics."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.settings import Settings
from tests.integration.server import running_broker

pytestmark = pytest.mark.integration


def _wait_for_status(
    client: httpx.Client, url: str, status: int, timeout: float = 20
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(url)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_readyz_follows_postgres_without_restart(tmp_path: Path, softhsm: LocalSoftHsm) -> None:
    own_cluster = LocalPostgres(tmp_path)
    dsn = own_cluster.up()
    settings = Settings(
        state_dir=tmp_path,
        database_url=Secret(dsn),
        token_label=softhsm.token_label,
        user_pin_file=softhsm.user_pin_file,
        db_pool_min=1,
        db_pool_max=2,
        log_format="json",
    )
    try:
        with running_broker(settings) as base, httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "alive"}
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"database": "ok", "hsm": "ok"}}
            assert ready.headers["x-request-id"]

            own_cluster.stop()
            down = _wait_for_status(client, "/readyz", 503)
            assert down.status_code == 503
            assert down.json()["checks"]["database"].startswith("PostgreSQL unavailable")
            assert down.json()["checks"]["hsm"] == "ok"
            assert client.get("/healthz").status_code == 200

            own_cluster.start()
            back = _wait_for_status(client, "/readyz", 200)
            assert back.status_code == 200

            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert 'keybroker_http_requests_total{route="/readyz",status="503"}' in metrics.text
    finally:
        own_cluster.stop()


def test_the_request_id_is_the_brokers_own(settings: Settings) -> None:
    with running_broker(settings) as base, httpx.Client(base_url=base) as client:
        for sent in ("abc-123", "bad id\twith spaces"):
            answered = client.get("/healthz", headers={"X-Request-Id": sent}).headers
            assert re.fullmatch(r"[0-9a-f]{16}", answered["x-request-id"])
        missing = client.get("/nope")
        assert missing.status_code == 404


def test_guest_endpoints_are_rate_limited_per_client(settings: Settings) -> None:
    limited = settings.with_overrides(rate_limit_per_second=1)  # burst of 2
    with running_broker(limited) as base, httpx.Client(base_url=base) as client:
        # The bucket refills by one a second: on a slow machine a third request may find a
        # fresh token, so ask until refused (ten requests cannot all fit in burst + refill
        # unless they take eight seconds).
        answers = []
        for _ in range(10):
            answers.append(client.post("/v1/challenge", json={"tee": "snp"}))
            if answers[-1].status_code != 201:
                break
        assert [a.status_code for a in answers[:2]] == [201, 201]
        refused = answers[-1]
        assert refused.status_code == 429
        assert refused.json()["type"].endswith("/rate-limited")
        assert refused.headers["retry-after"] == "5"
        assert client.get("/healthz").status_code == 200  # health is never limited
