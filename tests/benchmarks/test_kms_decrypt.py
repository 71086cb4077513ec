"""The KMS benchmark (benchmarks/kms_decrypt.py) sends what the broker accepts: each request
verifies under the broker's own SigV4 check, no two are alike (so none is a replay), and its
policy is a valid one that admits the simulated enclave's PCRs."""

from __future__ import annotations

import json
from datetime import timedelta

from botocore.credentials import Credentials

from benchmarks import kms_decrypt
from broker.bench.deploy import RunningBroker
from broker.policy.loader import load_policy_text
from broker.release import sigv4
from broker.simulate.guests import DEMO_PCRS
from broker.timeutil import utcnow

SECRET = "bench-secret-access-key"


def test_each_request_verifies_and_differs() -> None:
    running = RunningBroker("127.0.0.1", 18701, 0)
    caller = kms_decrypt.Caller(running, Credentials("KBBENCHACCESSKEY01", SECRET))
    signatures = set()
    for _ in range(3):
        headers, payload = caller.signed("Decrypt", {"CiphertextBlob": "AAAA"})
        received = sigv4.ReceivedRequest(
            "POST",
            b"/",
            b"",
            (("host", "127.0.0.1:18701"), *((n.lower(), v) for n, v in headers)),
            payload,
        )
        signed = sigv4.parse(received.headers, utcnow(), timedelta(seconds=300))
        sigv4.verify(signed, received, SECRET.encode())
        assert "amz-sdk-invocation-id" in signed.signed_headers
        signatures.add(signed.replay_key())
    assert len(signatures) == 3


def test_the_policy_admits_the_simulated_enclave_over_kms() -> None:
    document = kms_decrypt.policy("insecure-test-bench")
    policy = load_policy_text(json.dumps(document))
    assert policy.kms is not None
    values = document["reference_values"]["bench-enclave"]["values"][0]
    assert values == {f"pcrs.{i}": value.hex() for i, value in DEMO_PCRS.items()}
