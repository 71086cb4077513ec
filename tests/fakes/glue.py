"""The release service over stand-ins for its database and HSM, and what one simulated guest
sends it: the case that ``benchmarks/glue.py`` times and that unit tests drive through the
real guest endpoints (``broker/api/guest.py``).

The service is the real ``ReleaseService`` and the guest's bodies are what a simulated guest
sends (as ``broker/bench/loadgen.py``: an SNP report of a synthetic Milan chip signed by its
VCEK, with its VCEK and cert chain, an RSA-3072 tee key) under the benchmark's
production-like policy (``broker/bench/scenarios.py``, as
``policies/snp-production-disk-key.yaml``). Stand-ins replace what is not the service's own
work:

* the evidence is verified once; each attest then gets a fresh :class:`Claims` equal to the
  verifier's (``GlueService``);
* the database answers every statement at once (the audit record's arguments and canonical
  text are still computed, as they are for PostgreSQL), and always finds the release context
  it is asked to check still current: a release after the first uses the context it cached
  and runs one statement, as in steady state (``FakeDatabase``);
* the HSM's signature is 64 fixed bytes and its envelope is made once (``FakeCustody``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.datastructures import State

from broker.api.lean import LeanRequest
from broker.bench.scenarios import MEASUREMENT, SNP
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import verifier_for
from broker.evidence.snp.abi import GuestPolicy
from broker.lru import Lru
from broker.metrics import Metrics
from broker.policy.loader import load_policy_text
from broker.redact import SecretBytes
from broker.release import binding
from broker.release.collateral import CollateralResolver
from broker.release.nonces import Nonces
from broker.release.policies import PolicyCache, stored_form
from broker.release.service import AttestRequest, ReleaseService
from broker.runtime import Runtime
from broker.settings import Settings
from broker.simulate.snp import SnpKit
from broker.store.database import Database
from broker.store.release import PostgresReleaseStore
from broker.store.sqlfiles import name_of
from broker.timeutil import utcnow
from hsm.envelope import OaepHash, SealedSecret
from hsm.pubkey import RsaPublicKey

KEY_NAME = "bench-key"
POLICY_NAME = "bench-snp-disk-key"
SIGNATURE = bytes(range(64))


# --- stand-ins for the database and the HSM ---------------------------------------------------


class _Connection:
    """Answers every statement at once; keeps each statement's last arguments, by the name
    of its query."""

    def __init__(self) -> None:
        self.last_args: dict[str, tuple[Any, ...]] = {}

    async def fetchval(self, query: str, *args: Any) -> int:
        self.last_args[name_of(query)] = args
        return 1


class _Lease:
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> _Connection:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeDatabase:
    """What :class:`PostgresReleaseStore` uses of a ``Database``."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.conn = _Connection()
        self.context = context

    def connection(self) -> _Lease:
        return _Lease(self.conn)

    async def fetchrow(self, query: str, *args: Any) -> Mapping[str, Any] | None:
        name = name_of(query)
        if name != "release_context":
            raise LookupError(f"the glue benchmark has no answer for {name}")
        return self.context


class _Pool:
    async def run(self, fn: Callable[[None], Any]) -> Any:
        return fn(None)


class FakeCustody:
    """Signs with fixed bytes and returns an envelope made once (the HSM's work is the
    floor's); the public key is real, for the key id."""

    def __init__(
        self,
        sealed: SealedSecret,
        public_key: ec.EllipticCurvePublicKey,
        nonce_key: SecretBytes,
    ) -> None:
        self.signing_public_key = public_key
        self.sealed = sealed
        self.pool = _Pool()
        self._nonce_key = nonce_key

    def nonce_mac_key(self) -> SecretBytes:
        return self._nonce_key

    async def sign_digest_async(self, digest: bytes) -> bytes:
        return SIGNATURE

    def sign_digest_sync(self, digest: bytes, session: object) -> bytes:
        return SIGNATURE

    def release_to_sync(self, wrapped: object, tee_key: RsaPublicKey, session: object) -> Any:
        return self.sealed


class GlueService(ReleaseService):
    """The release service with the evidence's verification done once, beforehand."""

    verified: Claims

    async def _verify(self, request: AttestRequest, now: datetime) -> Claims:
        await self.collateral.resolve(request.tee, request.evidence, request.collateral, now)
        return dataclasses.replace(self.verified)  # a fresh object, as the verifier returns


# --- the case ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Material:
    """The keys a case is made of: the chip's kit, the guest's tee key, the broker's key."""

    kit: SnpKit
    tee_key: rsa.RSAPrivateKey
    broker_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, chain_rsa_bits: int = 4096) -> Material:
        """New keys; the chip's chain is RSA-4096 as AMD's (smaller only to save time)."""
        return cls(
            SnpKit.generate(rsa_bits=chain_rsa_bits),
            rsa.generate_private_key(65537, 3072),
            ec.generate_private_key(ec.SECP256R1()),
        )


@dataclasses.dataclass
class GlueCase:
    """A service and what one guest sends it."""

    service: GlueService
    state: State
    db: FakeDatabase
    attest_body: bytes
    release_body: bytes
    jwk: dict[str, str]
    nonce_text: str
    evidence: bytes
    material: Material


def build_case(material: Material | None = None) -> GlueCase:
    """A service and the requests of one guest; random parts from ``secrets``."""
    material = material or Material.generate()
    kit = material.kit
    roots = (kit.root(),)
    numbers = material.tee_key.public_key().public_numbers()
    jwk = RsaPublicKey(numbers.n, numbers.e).jwk()
    # The attest body is sent again on every flow: its nonce must stay live for the whole
    # run (the database stand-in never reports a replay).
    settings = Settings(rate_limit_per_second=0, challenge_ttl_seconds=3600)
    nonce_key = SecretBytes(secrets.token_bytes(32))
    nonce, _ = Nonces(nonce_key, settings.challenge_ttl_seconds).issue("snp", utcnow())
    nonce_text = base64.b64encode(nonce).decode("ascii")
    report = kit.report(
        report_data=binding.expected_report_data(nonce_text, jwk, "sha384"),
        measurement=MEASUREMENT,
        policy=GuestPolicy(abi_minor=0, abi_major=1, smt=True),
    )
    evidence, collateral = kit.sign(report), kit.collateral()
    claims = verifier_for(Tee.SNP).verify(evidence, collateral, now=utcnow(), extra_roots=roots)
    policy = load_policy_text(
        json.dumps(SNP.policy(POLICY_NAME, [root.name for root in roots])), is_json=True
    )
    document, digest = stored_form(policy)
    policies = PolicyCache()
    policies.get(document, digest)
    context = {
        "name": KEY_NAME,
        "version": 1,
        "kek_label": "kek-1",
        "wrapped_blob": secrets.token_bytes(40),
        "secret_length": 32,
        "state": "active",
        "exposure": "hsm-only",
        "policy_name": POLICY_NAME,
        "policy_version": 1,
        "digest": digest,
    }
    db = FakeDatabase(context)
    sealed = SealedSecret(secrets.token_bytes(384 + 40), OaepHash.SHA256, 3072, 32)
    runtime = SimpleNamespace(
        db=db,
        custody=FakeCustody(sealed, material.broker_key.public_key(), nonce_key),
        settings=settings,
        test_roots=roots,
    )
    service = GlueService(
        cast(Runtime, runtime),
        Metrics.create(),
        CollateralResolver(cast(Any, db)),
        policies,
        PostgresReleaseStore(cast(Database, db)),
    )
    service.verified = claims
    # The one attest body is sent again on every flow: like the database stand-in, the
    # service must not remember its nonce as consumed (the lookup itself still runs).
    service.consumed = Lru(0)
    state = State()
    state.release = service
    state.settings = settings
    # What the load generator sends (broker/bench/loadgen.py, broker/bench/http.py).
    attest_body = json.dumps(
        {
            "tee": "snp",
            "evidence": base64.b64encode(evidence).decode(),
            "tee_pubkey": jwk,
            "nonce": nonce_text,
            "collateral": {k: base64.b64encode(v).decode() for k, v in collateral.items()},
        },
        separators=(",", ":"),
    ).encode()
    release_body = json.dumps({"tee_pubkey": jwk}, separators=(",", ":")).encode()
    return GlueCase(
        service, state, db, attest_body, release_body, jwk, nonce_text, evidence, material
    )


def request(
    body: bytes, path_params: Mapping[str, str] | None = None, bearer: str | None = None
) -> LeanRequest:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if bearer is not None:
        headers.append((b"authorization", f"Bearer {bearer}".encode()))
    scope = {
        "type": "http",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "state": {"request_id": secrets.token_hex(8)},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return LeanRequest(scope, receive, path_params or {})
