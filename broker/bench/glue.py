"""The release service's Python glue, in µs per release: ``python -m broker.bench.glue``.

A release costs the broker the floor's cryptography and HSM work (``broker/bench/floor.py``),
HTTP, database round trips, and the glue between them: request bodies, base64, the tee key,
claims documents, the binding, the token's payload and JWS, the policy, audit records and
the answers' JSON. This measures the glue alone, on one core, in process.

The three guest endpoints of ``broker/api/guest.py`` run the real ``ReleaseService`` on the
body a simulated guest sends (as ``broker/bench/loadgen.py``: an SNP report of a synthetic
Milan chip signed by its VCEK, with its VCEK and cert chain, an RSA-3072 tee key) under the
benchmark's production-like policy (``broker/bench/scenarios.py``, as
``policies/snp-production-disk-key.yaml``), with stand-ins for what is not glue:

* the evidence is verified once; each attest then gets a fresh :class:`Claims` equal to the
  verifier's (the verification is floor work, ``python -m broker.bench.snp_verify``);
* the database answers every statement at once (the audit record's arguments and canonical
  text are still computed, as they are for PostgreSQL), and always finds the release context
  it is asked to check still current: a release after the first uses the context it cached
  and runs one statement, as in steady state;
* the HSM's signature is 64 fixed bytes and its envelope is made once.

The first table times each endpoint with its answer's JSON (what ``broker/api/lean.py``
writes), the best mean of ``--repeat`` rounds of ``--flows`` flows; the second times the
glue's functions one by one on the values of one flow.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from starlette.datastructures import State

from broker import fastjson, jose
from broker.api import guest
from broker.api.body import decode_base64, json_object
from broker.api.lean import LeanRequest
from broker.api.ratelimit import RateLimiter
from broker.bench.scenarios import MEASUREMENT, SNP
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import verifier_for
from broker.evidence.snp.abi import GuestPolicy
from broker.lru import Lru
from broker.metrics import Metrics
from broker.policy.loader import load_policy_text
from broker.redact import SecretBytes
from broker.release import binding, tokens
from broker.release.collateral import CollateralResolver
from broker.release.nonces import Nonces
from broker.release.policies import PolicyCache, audit_summary, stored_form
from broker.release.service import AttestRequest, ReleaseService
from broker.runtime import Runtime
from broker.settings import Settings
from broker.simulate.snp import SnpKit
from broker.store.audit import AuditRecord
from broker.store.database import Database
from broker.store.release import PostgresReleaseStore
from broker.store.sqlfiles import name_of
from broker.timeutil import utcnow
from hsm.envelope import OaepHash, SealedSecret
from hsm.pubkey import RsaPublicKey, from_jwk

KEY_NAME = "bench-key"
POLICY_NAME = "bench-snp-disk-key"
SIGNATURE = bytes(range(64))
STEPS = ("challenge", "attest", "release")
_ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))
_ATTEST_MEMBERS = {"tee", "evidence", "tee_pubkey", "nonce", "collateral"}
T = TypeVar("T")


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
    state.rate_limiter = RateLimiter(0, 1)
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


# --- timing -----------------------------------------------------------------------------------


async def flow(case: GlueCase, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """One challenge, attest and release; the seconds each endpoint took with its answer's
    JSON (building the request objects is not counted)."""
    state = case.state
    spent: list[float] = []
    challenge_request = request(b'{"tee":"snp"}')
    start = clock()
    fastjson.dumps((await guest.challenge(challenge_request, state))[1])
    spent.append(clock() - start)
    attest_request = request(case.attest_body)
    start = clock()
    _, attested = await guest.attest(attest_request, state)
    fastjson.dumps(attested)
    spent.append(clock() - start)
    release_request = request(case.release_body, {"name": KEY_NAME}, attested["token"])
    start = clock()
    fastjson.dumps((await guest.release(release_request, state))[1])
    spent.append(clock() - start)
    return spent


async def time_flows(case: GlueCase, flows: int, repeat: int) -> dict[str, float]:
    """µs per endpoint: the best mean over ``repeat`` rounds of ``flows`` flows."""
    best = dict.fromkeys(STEPS, math.inf)
    for _ in range(repeat):
        totals = [0.0] * len(STEPS)
        for _ in range(flows):
            for index, seconds in enumerate(await flow(case)):
                totals[index] += seconds
        for step, total in zip(STEPS, totals, strict=True):
            best[step] = min(best[step], total / flows * 1e6)
    return best


def best_us(operation: Callable[[], object], number: int, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            operation()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (the stand-ins answer at once)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the coroutine suspended")


def functions(case: GlueCase) -> dict[str, Callable[[], object]]:
    """The glue's functions, each on the values of one flow."""
    service, jwk, nonce_text = case.service, case.jwk, case.nonce_text
    document = json.loads(case.attest_body)
    claims = service.verified
    tee_key = from_jwk(jwk)
    nonce = base64.b64decode(nonce_text)
    now = utcnow()
    payload = tokens.payload(claims, dict(jwk), "ab" * 32, now, 300)
    data = jose.signing_input(payload, jose.TYP_ATTESTATION_RESULT, service.kid)
    result = tokens.result_of(payload, claims, tee_key, now)
    memo = tokens.IssuedTokens()
    token = jose.compact(data, SIGNATURE)
    memo.remember(token, result)
    # A token signed for real, as another worker of the broker would have issued it.
    digest = hashlib.sha256(data).digest()
    der = case.material.broker_key.sign(digest, _ES256)
    r, s = decode_dss_signature(der)
    signed = jose.compact(data, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    public = service.custody.signing_public_key
    policy = service.policies.cached(str(case.db.context["digest"]))
    if policy is None:
        raise LookupError("the benchmark's policy is not compiled")
    decision = service.policies.evaluate(policy, claims, now)
    run_now(flow(case))
    attest_record = _record_of(case.db.conn.last_args["consume_challenge_and_audit"][3:])
    release_record = _record_of(case.db.conn.last_args["audit_release_if_current"])
    attested = run_now(guest.attest(request(case.attest_body), case.state))[1]
    return {
        "json_object (attest body)": lambda: run_now(
            json_object(request(case.attest_body), _ATTEST_MEMBERS, 1 << 20)
        ),
        "  of which request()": lambda: request(case.attest_body),
        "decode_base64 (evidence)": lambda: decode_base64(document["evidence"], "evidence"),
        "from_jwk": lambda: from_jwk(jwk),
        "thumbprint (new RsaPublicKey)": lambda: RsaPublicKey(
            tee_key.modulus, tee_key.exponent
        ).thumbprint(),
        "Claims.document + to_json (new claims)": lambda: _json_forms(claims),
        "Signer.to_json": claims.signer.to_json,
        "Nonces.issue": lambda: service.nonces.issue("snp", now),
        "Nonces.check": lambda: service.nonces.check(nonce, "snp", now),
        "check_binding": lambda: binding.check_binding(claims, nonce, nonce_text, jwk, tee_key),
        "tokens.payload": lambda: tokens.payload(
            dataclasses.replace(claims), dict(jwk), "ab" * 32, now, 300
        ),
        "jose.signing_input": lambda: jose.signing_input(
            payload, jose.TYP_ATTESTATION_RESULT, service.kid
        ),
        "jose.compact": lambda: jose.compact(data, SIGNATURE),
        "tokens.result_of": lambda: tokens.result_of(payload, claims, tee_key, now),
        # The token as a release presents it: a new string (not hashed yet), as the issued one.
        "IssuedTokens.remember + read": lambda: _remember_and_read(memo, token, result, now),
        "tokens.read (another worker's token)": lambda: tokens.read(signed, public, now),
        "  of which the ES256 verification": lambda: public.verify(der, digest, _ES256),
        "policy evaluate": lambda: service.policies.evaluate(policy, claims, now),
        "audit_summary": lambda: audit_summary(decision),
        "AuditRecord.text (attest)": attest_record.text,
        "AuditRecord.text (release)": release_record.text,
        "fastjson.dumps (attest answer)": lambda: fastjson.dumps(attested),
        "utcnow": utcnow,
    }


def _remember_and_read(
    memo: tokens.IssuedTokens, token: str, result: tokens.AttestationResult, now: datetime
) -> object:
    memo.remember(token.encode().decode(), result)
    return memo.read(token.encode().decode(), cast(Any, None), now)


def _json_forms(claims: Claims) -> object:
    fresh = dataclasses.replace(claims)  # as the verifier returns for each attestation
    return fresh.document(), fresh.to_json()


def _record_of(args: tuple[Any, ...]) -> AuditRecord:
    """The audit record whose canonical text is the statement's last argument (as for
    ``audit_append``, ``consume_challenge_and_audit`` and ``audit_release_if_current``)."""
    body = json.loads(args[-1])
    at = datetime.fromisoformat(body.pop("at"))
    kind, decision = body.pop("kind"), body.pop("decision")
    return AuditRecord(at, kind, decision, body.pop("request_id"), body.pop("key_name"), body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300, help="flows per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (the best is kept)")
    parser.add_argument("--number", type=int, default=1000, help="calls per function round")
    args = parser.parse_args(argv)
    case = build_case()
    per_step = asyncio.run(time_flows(case, args.flows, args.repeat))
    print(f"{'endpoint (with its answer JSON)':40} {'µs':>8}")
    for step, micros in per_step.items():
        print(f"{step:40} {micros:8.1f}")
    print(f"{'per release':40} {sum(per_step.values()):8.1f}")
    print()
    print(f"{'function':40} {'µs':>8}")
    for name, operation in functions(case).items():
        print(f"{name:40} {best_us(operation, args.number, args.repeat):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
