"""A bound policy whose stored version is gone when the release reads it fails closed.

Policies are never deleted through the broker, so this takes someone editing the database
between the release's two reads; the release must then be refused as an error, audited,
and never sealed. Driven through the real guest endpoints and release service over the glue
benchmark's stand-ins (an HSM that signs with fixed bytes), with the release store in
memory holding the key's context but not its policy's document.
"""

from __future__ import annotations

import asyncio

import pytest

from broker.api import guest
from broker.errors import StoredPolicyInvalid
from broker.release.policies import PolicyCache
from broker.store.contexts import ReleaseContext
from tests.fakes import glue
from tests.fakes.release_store import MemoryReleaseStore


def test_a_vanished_policy_refuses_the_release_and_audits_an_error() -> None:
    case = glue.build_case(glue.Material.generate(chain_rsa_bits=2048))
    gone = MemoryReleaseStore([ReleaseContext.of(case.db.context)], documents={})
    service = case.service
    service.store = gone
    service.policies = PolicyCache()  # nothing compiled: the policy must be read
    sealed: list[object] = []
    seal = service.custody.release_to_sync
    service.custody.release_to_sync = lambda *args: sealed.append(args) or seal(*args)  # type: ignore[method-assign]

    async def attest_then_release() -> None:
        _, attested = await guest.attest(glue.request(case.attest_body), case.state)
        release = glue.request(case.release_body, {"name": glue.KEY_NAME}, attested["token"])
        await guest.release(release, case.state)

    with pytest.raises(StoredPolicyInvalid, match=r"policy .* v1 vanished"):
        asyncio.run(attest_then_release())
    assert sealed == []  # no envelope was made
    assert gone.calls["policy_document"] == 1
    record = gone.log[-1]
    assert (record.kind, record.decision) == ("release", "error")
    assert record.body["error"]["type"] == "stored-policy-invalid"
