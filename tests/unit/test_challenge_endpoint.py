"""``POST /v1/challenge`` touches neither the database nor the HSM: the real endpoint and
release service (as the glue benchmark builds them) run with both replaced by objects that
raise on any use at all."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Any

import pytest

from broker.api import guest
from broker.timeutil import utcnow
from tests.fakes import glue


class Touched(Exception):
    pass


class Untouchable:
    """Raises on any attribute: a method call, a query, a pool lease, a session."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise Touched(f"{self._what}.{name} was used")


@pytest.fixture(scope="module")
def case() -> glue.GlueCase:
    return glue.build_case(glue.Material.generate(chain_rsa_bits=2048))


def test_challenge_uses_no_database_and_no_hsm(case: glue.GlueCase) -> None:
    service = case.service
    store, custody = service.store, service.custody
    service.store = Untouchable("database")  # type: ignore[assignment]
    service.custody = Untouchable("custody")  # type: ignore[assignment]
    try:
        status, answer = asyncio.run(guest.challenge(glue.request(b'{"tee":"snp"}'), case.state))
        assert status == 201
        nonce = base64.b64decode(answer["nonce"], validate=True)
        expires_at = datetime.fromisoformat(answer["expires_at"])
        # The nonce is one this broker accepts for its tee, until its expiry.
        assert service.nonces.check(nonce, "snp", utcnow()) == expires_at
        # The stand-in does catch a use: an attestation must record its nonce.
        service.custody = custody
        with pytest.raises(Touched, match="database"):
            asyncio.run(guest.attest(glue.request(case.attest_body), case.state))
    finally:
        service.store, service.custody = store, custody
