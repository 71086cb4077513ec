"""``python -m benchmarks.kms_decrypt``: KMS ``Decrypt`` with a ``Recipient``, requests a second.

What an enclave application's data-key fetch costs a running broker (docs/kms.md): one
``keybroker serve`` worker pinned to the broker's core, as ``keybroker bench`` runs it
(docs/performance.md), PostgreSQL and this client on the other cores. Every request is what
boto3 sends: ``TrentService.Decrypt`` of a ciphertext blob of ``enclave-data-key`` with a
``Recipient`` (a simulated Nitro attestation document binding an RSA-2048 key, as the Nitro
SDK makes), signed with SigV4 by botocore. Each request also signs an
``amz-sdk-invocation-id`` of its own, as the JavaScript SDK does, so that no two signatures
are alike and none is refused as a replay. Per request the broker checks the signature and
records it against replays, verifies the document, evaluates the key's policy, opens the
blob in the HSM, builds the CMS envelope and commits the audit record before it answers.

``--connections`` clients send back to back for ``--duration`` seconds after a warm-up,
``--rounds`` times (the machine's speed drifts); every answer must be 200 with a
``CiphertextForRecipient`` and no ``Plaintext``, else the run fails. Reported: each round's
requests a second and their median, the broker's CPU milliseconds per request, and the load
average before and after (the machine may be shared). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.bench import deploy
from broker.bench.deploy import BenchState, BrokerConfig, Cores, RunningBroker
from broker.bench.http import Connection, HttpError
from broker.bench.runner import machine_facts
from broker.roles import Role
from broker.runtime import trusted_test_roots
from broker.simulate.guests import DEMO_PCRS, SimulatedNitro
from broker.simulate.nitro import FakeNitroAuthority
from broker.store import admin_tokens
from broker.store.database import Database

DATABASE = "bench_kms"
KEY = "enclave-data-key"
REGION = "eu-west-1"
CONTEXT = {"purpose": "benchmark"}


@dataclass(frozen=True)
class Caller:
    """The access key the requests are signed with, and the broker they go to."""

    running: RunningBroker
    credentials: Credentials

    def signed(self, operation: str, body: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
        """The headers and body of one request, signed by botocore as boto3 signs it."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        request = AWSRequest(
            method="POST",
            url=f"{self.running.base}/",
            data=payload,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"TrentService.{operation}",
                "amz-sdk-invocation-id": str(uuid.uuid4()),
            },
        )
        SigV4Auth(self.credentials, "kms", REGION).add_auth(request)
        return list(request.headers.items()), payload


def policy(root: str) -> dict[str, Any]:
    """Production-like: the simulated authority's root, the enclave's PCR0-2, KMS use by any
    access key, debug refused."""
    pcrs = {f"pcrs.{index}": value.hex() for index, value in DEMO_PCRS.items()}
    return {
        "format": "keybroker-policy/1",
        "name": "bench-kms",
        "version": 1,
        "reference_values": {"bench-enclave": {"tee": "nitro", "values": [pcrs]}},
        "kms": {},
        "admit": {"nitro": {"signer": {"roots": [root]}, "reference_values": ["bench-enclave"]}},
    }


async def _tokens(dsn: str) -> dict[Role, str]:
    db = await Database.connect(dsn, 1, 2)
    try:
        made = {}
        for role in (Role.ADMIN, Role.KEY_CUSTODIAN, Role.POLICY_AUTHOR):
            _, token = await admin_tokens.create(db, f"bench-kms-{role.value}", role, "bench")
            made[role] = token.reveal()
        return made
    finally:
        await db.close()


def seed(running: RunningBroker, dsn: str, root: str) -> Credentials:
    """The key (generated in the HSM, exposure broker-memory), its policy, an access key."""
    tokens = asyncio.run(_tokens(dsn))

    def call(role: Role, method: str, path: str, body: dict[str, Any]) -> Any:
        answer = httpx.request(
            method,
            f"{running.base}{path}",
            json=body,
            headers={"Authorization": f"Bearer {tokens[role]}"},
            timeout=60,
        )
        if answer.status_code not in (200, 201):
            raise SystemExit(f"seeding: {method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    call(Role.KEY_CUSTODIAN, "POST", "/v1/admin/keys", {"name": KEY, "generate_length": 32})
    call(Role.KEY_CUSTODIAN, "PUT", f"/v1/admin/keys/{KEY}/exposure", {"exposure": "broker-memory"})
    document = policy(root)
    call(Role.POLICY_AUTHOR, "POST", "/v1/admin/policies", {"document": document})
    call(Role.POLICY_AUTHOR, "PUT", f"/v1/admin/keys/{KEY}/policy", {"policy": document["name"]})
    key = call(Role.ADMIN, "POST", "/v1/admin/access-keys", {"name": "bench-kms"})
    return Credentials(key["access_key_id"], key["secret_access_key"])


async def _encrypt(caller: Caller, plaintext: bytes) -> str:
    body = {"KeyId": f"alias/{KEY}", "Plaintext": _b64(plaintext), "EncryptionContext": CONTEXT}
    answer = await _send(
        Connection(caller.running.host, caller.running.port), caller, "Encrypt", body
    )
    blob: str = answer["CiphertextBlob"]
    return blob


async def _send(
    connection: Connection, caller: Caller, operation: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers, payload = caller.signed(operation, body)
    answer = await connection.send("POST", "/", headers, payload)
    if answer.status != 200:
        raise HttpError(f"{operation}: {answer.status} {answer.body[:300]!r}")
    document: dict[str, Any] = answer.json()
    return document


async def _round(caller: Caller, body: dict[str, Any], connections: int, seconds: float) -> float:
    """Decrypts a second over ``seconds`` on ``connections`` keep-alive connections."""
    done = [0]
    end = time.monotonic() + seconds

    async def client() -> None:
        connection = Connection(caller.running.host, caller.running.port)
        try:
            while time.monotonic() < end:
                answer = await _send(connection, caller, "Decrypt", body)
                if "Plaintext" in answer or not answer.get("CiphertextForRecipient"):
                    raise HttpError(f"Decrypt answered {sorted(answer)}, not a recipient's")
                done[0] += 1
        finally:
            await connection.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return done[0] / (time.monotonic() - started)


def measure(caller: Caller, document: bytes, options: argparse.Namespace) -> dict[str, Any]:
    blob = asyncio.run(_encrypt(caller, os.urandom(32)))
    body = {
        "CiphertextBlob": blob,
        "EncryptionContext": CONTEXT,
        "Recipient": {
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            "AttestationDocument": _b64(document),
        },
    }
    asyncio.run(_round(caller, body, options.connections, options.warmup))
    load_before = os.getloadavg()
    cpu_before = deploy.tree_cpu_seconds(caller.running.pid)
    rates = []
    for _ in range(options.rounds):
        rates.append(asyncio.run(_round(caller, body, options.connections, options.duration)))
    cpu = deploy.tree_cpu_seconds(caller.running.pid) - cpu_before
    served = sum(rates) * options.duration
    return {
        "operation": "KMS Decrypt with Recipient (Nitro document, RSAES_OAEP_SHA_256)",
        "requests_per_second": [round(rate, 1) for rate in rates],
        "median_requests_per_second": round(statistics.median(rates), 1),
        "broker_cpu_ms_per_request": round(1000 * cpu / served, 2),
        "connections": options.connections,
        "duration_s": options.duration,
        "loadavg_before": [round(value, 2) for value in load_before],
        "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        "machine": machine_facts(),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _authority(folder: Path) -> Path:
    """The simulated Nitro PKI, made once; the file of its root for insecure_test_roots."""
    root_file = folder / "bench-kms-nitro.pem"
    if not root_file.exists():
        authority = FakeNitroAuthority.generate()
        authority.save(folder / "authority")
        root_file.write_bytes(authority.root.public_bytes(serialization.Encoding.PEM))
    return root_file


async def _fresh_database(state: BenchState) -> str:
    """Each run starts from an empty database: the same key, policy and access key again."""
    admin = await asyncpg.connect(state.postgres.dsn("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
    finally:
        await admin.close()
    return await state.database(DATABASE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kms_decrypt", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".keybroker/kms-bench"))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, help="the broker's port (default: a free one)")
    options = parser.parse_args(argv)

    cores = Cores.detect()
    state = BenchState(options.state_dir)
    state.up(cores)
    folder = state.material_dir("kms-nitro")
    folder.mkdir(parents=True, exist_ok=True)
    root_file = _authority(folder)
    (root,) = trusted_test_roots((root_file,))
    dsn = asyncio.run(_fresh_database(state))
    deploy.pin_tree(state.postgres_pid(), cores.others)
    config = BrokerConfig(
        dsn=dsn,
        workers=1,
        cpus=cores.broker,
        trusted_roots=(root_file,),
        log_file=state.logs / "kms-broker.log",
    )
    enclave = rsa.generate_private_key(65537, 2048)  # the Nitro SDK's key size
    spki = enclave.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    own = os.sched_getaffinity(0)
    try:
        with deploy.broker(state, config, options.port) as running:
            caller = Caller(running, seed(running, dsn, root.name))
            os.sched_setaffinity(0, cores.others)
            # one document for the whole run: well within kms_clock_skew_seconds (300 s)
            document = SimulatedNitro(folder / "authority").document(spki)
            result = measure(caller, document, options)
    finally:
        os.sched_setaffinity(0, own)
        state.down()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
