"""The load generator: simulated guests doing the whole release flow, in their own process.

Each guest loops: challenge, bind the nonce and its key into fresh evidence, then release in
one request carrying that evidence (``flow="one-request"``, the default), or attest for a
token and release with it (``flow="token"``). With several platforms, each flow's evidence
comes from the next simulated chip in turn; with several broker replicas, each guest keeps
to one of them, guests spread evenly.
One release in ``check_every`` is checked as a real guest would check it (the broker's
signature on the envelope, then the envelope opened with the private key and the secret
compared); the others are checked for status and shape only, because one RSA-3072 private
decryption costs about 1.5 ms (ARCHITECTURE §6) and the generator must not measure itself.

Timing: every process shares ``time.monotonic`` (CLOCK_MONOTONIC is system-wide). Flows that
complete inside the measurement window count; errors count whenever they happen, warm-up
included; the generator records its own CPU time over the window.
"""

from __future__ import annotations

import asyncio
import base64
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from keybroker_guest.evidence import BindingInput

from broker import jose
from broker.bench.http import Answer, Connection, HttpError
from broker.bench.keypool import load_pool
from broker.bench.scenarios import Material, Source, scenario
from broker.bench.seed import key_index, key_secret
from broker.guest.client import tee_jwk
from broker.release.binding import expected_report_data
from hsm.envelope import OaepHash, open_envelope

MAX_ERROR_SAMPLES = 5
#: The release flows a generator drives (docs/api.md "The guest flow").
FLOWS = ("one-request", "token")


@dataclass(frozen=True)
class Plan:
    """What one generator process does."""

    host: str
    ports: tuple[int, ...]
    """One per broker replica; guest ``g`` of generator ``seed`` talks to
    ``ports[(g + seed) % len(ports)]``."""
    scenario: str
    material: Material
    key_pool: Path
    pool_size: int
    key_prefix: str
    key_count: int
    secret: bytes
    guests: int
    warmup_s: float
    duration_s: float
    check_every: int = 20
    seed: int = 0
    flow: str = "one-request"
    """``one-request`` (challenge, release with the evidence) or ``token`` (challenge,
    attest, release with the token)."""
    platforms: int = 1
    """How many of the material's platforms the flows cycle through."""
    generators: int = 1
    """How many generator processes share the run (to spread the platforms among them)."""


@dataclass
class Outcome:
    """What one generator saw: flows and CPU inside the measurement window, every error."""

    flows: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    checked: int = 0
    cpu_s: float = 0.0
    window_s: float = 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(text)


class FlowError(RuntimeError):
    pass


@dataclass(frozen=True)
class _GuestKey:
    private: rsa.RSAPrivateKey
    jwk: dict[str, str]
    spki: bytes


def _expect(answer: Answer, status: int, what: str) -> Any:
    if answer.status != status:
        raise FlowError(f"{what}: HTTP {answer.status} {answer.body[:200]!r}")
    return answer.json()


class Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.window_start = self.window_end = 0.0
        self.source: Source = scenario(plan.scenario).source(plan.material)
        if plan.flow not in FLOWS:
            raise ValueError(f"flow must be one of {', '.join(FLOWS)}, not {plan.flow!r}")
        self.keys = [self._guest_key(k) for k in load_pool(plan.key_pool, plan.pool_size)]
        # Which key each release asks for: reproducible, and no secret.
        self.random = random.Random(plan.seed)  # noqa: S311
        self.outcome = Outcome()
        self.broker_key: ec.EllipticCurvePublicKey | None = None
        self._flow_number = 0

    @staticmethod
    def _guest_key(private: rsa.RSAPrivateKey) -> _GuestKey:
        public, jwk = tee_jwk(private)
        return _GuestKey(private, jwk, public.spki_der())

    async def run(self, start: float) -> Outcome:
        """Guests start at once; flows completing in the window after the warm-up count."""
        self.window_start = start + self.plan.warmup_s
        self.window_end = self.window_start + self.plan.duration_s
        probe = Connection(self.plan.host, self.plan.ports[0])
        try:
            self.broker_key = _jwks_key((await probe.request("GET", "/v1/jwks")).json())
        finally:
            await probe.close()
        meter = asyncio.create_task(self._meter_cpu())
        await asyncio.gather(*(self._guest(index) for index in range(self.plan.guests)))
        await meter
        return self.outcome

    async def _meter_cpu(self) -> None:
        await asyncio.sleep(max(0.0, self.window_start - time.monotonic()))
        before = _cpu_seconds()
        await asyncio.sleep(max(0.0, self.window_end - time.monotonic()))
        self.outcome.cpu_s = _cpu_seconds() - before
        self.outcome.window_s = self.plan.duration_s

    async def _guest(self, index: int) -> None:
        ports = self.plan.ports
        connection = Connection(self.plan.host, ports[(index + self.plan.seed) % len(ports)])
        turn = index
        try:
            while time.monotonic() < self.window_end:
                key = self.keys[turn % len(self.keys)]
                turn += self.plan.guests
                started = time.monotonic()
                failure: str | None = None
                try:
                    await self._flow(connection, key)
                except (FlowError, HttpError, ValueError, KeyError, TypeError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                finished = time.monotonic()
                if failure is not None:  # counted whenever it happens, warm-up included
                    self.outcome.error(failure)
                elif self.window_start <= finished <= self.window_end:
                    self.outcome.flows += 1
                    self.outcome.latencies_ms.append((finished - started) * 1000)
        finally:
            await connection.close()

    async def _flow(self, connection: Connection, key: _GuestKey) -> None:
        plan = self.plan
        challenge = _expect(
            await connection.request("POST", "/v1/challenge", {"tee": self.source.tee}),
            201,
            "challenge",
        )
        nonce = str(challenge["nonce"])
        platform = (self._flow_number * plan.generators + plan.seed) % plan.platforms
        self._flow_number += 1
        evidence, collateral = self.source.produce(
            BindingInput(
                report_data=expected_report_data(nonce, key.jwk, "sha384"),
                nonce=base64.b64decode(nonce),
                public_key_der=key.spki,
            ),
            platform,
        )
        attestation = {
            "tee": self.source.tee,
            "evidence": base64.b64encode(evidence).decode(),
            "tee_pubkey": key.jwk,
            "nonce": nonce,
            "collateral": {k: base64.b64encode(v).decode() for k, v in collateral.items()},
        }
        name = f"{plan.key_prefix}{self.random.randrange(plan.key_count):06d}"
        path = f"/v1/keys/{name}/release"
        if plan.flow == "one-request":
            answer = await connection.request("POST", path, attestation)
        else:
            attested = _expect(
                await connection.request("POST", "/v1/attest", attestation), 200, "attest"
            )
            token = str(attested["token"])
            answer = await connection.request("POST", path, {"tee_pubkey": key.jwk}, bearer=token)
        released = _expect(answer, 200, "release")
        if released.get("key") != name or "envelope" not in released:
            raise FlowError(f"release of {name}: unexpected answer {sorted(released)}")
        if self._flow_number % plan.check_every == 0:
            self._check(released, key, name)

    def _check(self, released: dict[str, Any], key: _GuestKey, name: str) -> None:
        """What a real guest does: trust only the signed envelope, then open it."""
        if self.broker_key is None:  # pragma: no cover - run() sets it first
            raise FlowError("no broker key")
        try:
            signed = jose.verify(released["envelope"], jose.TYP_RELEASE, self.broker_key)
        except Exception as exc:
            raise FlowError(f"envelope signature: {exc}") from None
        ciphertext = base64.urlsafe_b64decode(signed["ciphertext"] + "==")
        secret = open_envelope(
            key.private, ciphertext, OaepHash(signed["oaep_hash"]), int(signed["secret_length"])
        )
        expected = key_secret(self.plan.secret, key_index(name))
        if signed["key"] != name or secret != expected:
            raise FlowError(f"release of {name}: the envelope holds another secret")
        self.outcome.checked += 1


def _jwks_key(document: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    key = document["keys"][0]
    x = int.from_bytes(base64.urlsafe_b64decode(key["x"] + "=="), "big")
    y = int.from_bytes(base64.urlsafe_b64decode(key["y"] + "=="), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generator_main(plan: Plan, cpus: set[int] | None, ready: Any, go: Any, results: Any) -> None:
    """Process entry: load, say ready, wait for the start instant, run, send the outcome."""
    if cpus:
        import os  # noqa: PLC0415

        os.sched_setaffinity(0, cpus)
    try:
        generator = Generator(plan)
        ready.put(None)
        start = go.get()
        outcome = uvloop.run(generator.run(start))
    except Exception as exc:  # report instead of dying silently in a child process
        outcome = Outcome()
        outcome.error(f"generator failed: {type(exc).__name__}: {exc}")
    results.put(outcome)
