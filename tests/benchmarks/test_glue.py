"""The glue micro-benchmark (benchmarks/glue.py) drives the real guest endpoints to an allowed
release."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks import glue
from tests.fakes.glue import GlueCase, Material, build_case


@pytest.fixture(scope="module")
def case() -> GlueCase:
    return build_case(Material.generate(chain_rsa_bits=2048))


def test_a_flow_is_an_allowed_release(case: GlueCase) -> None:
    spent = asyncio.run(glue.flow(case))
    assert len(spent) == len(glue.STEPS)
    assert all(seconds > 0 for seconds in spent)
    records = case.db.conn.last_args
    attest = json.loads(records["consume_challenge_and_audit"][-1])
    release = json.loads(records["audit_release_if_current"][14])  # $15; $16..$21: limits
    assert (attest["kind"], attest["decision"]) == ("attest", "allow")
    assert (release["kind"], release["decision"]) == ("release", "allow")
    assert release["token_id"] == attest["token_id"]


def test_every_function_runs(case: GlueCase) -> None:
    for name, operation in glue.functions(case).items():
        assert glue.best_us(operation, 1, 1) > 0, name
