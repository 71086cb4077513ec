"""The release service's Python glue, in µs per release: ``python -m benchmarks.glue``.

A release costs the broker the floor's cryptography and HSM work (``broker/bench/floor.py``),
HTTP, database round trips, and the glue between them: request bodies, base64, the tee key,
claims documents, the binding, the token's payload and JWS, the policy, audit records and
the answers' JSON. This measures the glue alone, on one core, in process.

The three guest endpoints of ``broker/api/guest.py`` run the real ``ReleaseService`` on the
body a simulated guest sends, with stand-ins for what is not glue (``tests/fakes/glue.py``):
the evidence is verified once (the verification is floor work, ``python -m
benchmarks.snp_verify``), the database answers at once, and the HSM's signature and envelope
are made once.

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
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from broker import fastjson, jose
from broker.api import guest
from broker.api.body import decode_base64, json_object
from broker.evidence.claims import Claims
from broker.release import binding, tokens
from broker.release.policies import audit_summary
from broker.store.audit import AuditRecord
from broker.timeutil import utcnow
from hsm.pubkey import RsaPublicKey, from_jwk
from tests.fakes.glue import KEY_NAME, SIGNATURE, GlueCase, build_case, request

STEPS = ("challenge", "attest", "release")
_ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))
_ATTEST_MEMBERS = {"tee", "evidence", "tee_pubkey", "nonce", "collateral"}
T = TypeVar("T")


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
    public = service.custody.signing_public_key
    memo = tokens.IssuedTokens(public)
    token = jose.compact(data, SIGNATURE)
    memo.remember(token, result)
    # A token signed for real, as another worker of the broker would have issued it.
    digest = hashlib.sha256(data).digest()
    der = case.material.broker_key.sign(digest, _ES256)
    r, s = decode_dss_signature(der)
    signed = jose.compact(data, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    policy = service.policies.cached(str(case.db.context["digest"]))
    if policy is None:
        raise LookupError("the benchmark's policy is not compiled")
    decision = service.policies.evaluate(policy, claims, now)
    run_now(flow(case))
    attest_record = _record_of(case.db.conn.last_args["consume_challenge_and_audit"][3:])
    # $11..$15 are the record's; $16..$21 the release limits (none here).
    release_record = _record_of(case.db.conn.last_args["audit_release_if_current"][:15])
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
        "IssuedTokens.remember + read": lambda: _remember_and_read(
            memo, token, result, public, now
        ),
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
    memo: tokens.IssuedTokens,
    token: str,
    result: tokens.AttestationResult,
    public: ec.EllipticCurvePublicKey,
    now: datetime,
) -> object:
    memo.remember(token.encode().decode(), result)
    return memo.read(token.encode().decode(), public, now)


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
