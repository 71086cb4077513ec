"""``python -m benchmarks.junk``: what unauthenticated junk costs a running broker.

Junk is what any stranger can send: attests with a random nonce (never MAC'd by this
broker) and releases with ``Authorization: Bearer a.b.c``, half each. Two measurements, each
on a broker of its own (``keybroker serve``, one worker pinned to the broker's core, as
``keybroker bench`` runs it; docs/performance.md):

1. **Audit records per junk.** ``--junk`` requests (10,000) at ``--junk-rate`` a second;
   the audit log's records by kind are counted before, right after the junk, and after the
   broker has shut down (when it writes what it still holds); with the CPU seconds the
   broker and PostgreSQL spent meanwhile (steadier than rates on a shared machine).
2. **Legitimate releases under junk.** Simulated guests run the whole flow (challenge, attest,
   release) for ``--duration`` seconds alone, then as long again while junk arrives at
   ``--junk-rate``, alternating ``--rounds`` times (the machine's speed drifts): the mean
   releases per second of each, and their ratio.

The junk is paced (open loop) at the same rate before and after a change, so that a broker
that refuses junk faster is not sent more of it. ``--broker-source DIR`` runs the broker from
another checkout (for example ``git archive main | tar -x -C /tmp/before``), to measure the
code before a change with this same harness. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.bench import deploy, keypool, seed
from broker.bench.deploy import BenchState, BrokerConfig, Cores, RunningBroker
from broker.bench.http import Connection, HttpError
from broker.bench.loadgen import Outcome, Plan, generator_main
from broker.bench.scenarios import scenario
from broker.guest.client import tee_jwk
from broker.store import audit
from broker.store.database import Database

DATABASE = "bench_junk"
GUESTS = 8
JUNK_CONNECTIONS = 16


@dataclass(frozen=True)
class JunkPlan:
    host: str
    port: int
    rate: float
    """Requests a second, paced from the start (open loop)."""
    total: int | None
    """Stop after this many requests; None: at ``deadline``."""
    seconds: float
    """Stop at start + ``seconds`` (also a bound when ``total`` is set)."""


@dataclass(frozen=True)
class JunkOutcome:
    sent: int
    refused_as_expected: int
    other: int
    seconds: float


def _junk_attest() -> dict[str, Any]:
    """A well-formed attest body; each request sends it with a random nonce."""
    _, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    return {
        "tee": "snp",
        "evidence": base64.b64encode(os.urandom(1184)).decode(),  # an SNP report's size
        "tee_pubkey": jwk,
    }


async def _junk(plan: JunkPlan) -> JunkOutcome:
    attest = _junk_attest()
    started = time.monotonic()
    deadline = started + plan.seconds
    counters = {"next": 0, "expected": 0, "other": 0}

    async def worker() -> None:
        connection = Connection(plan.host, plan.port)
        try:
            while True:
                index = counters["next"]
                if plan.total is not None and index >= plan.total:
                    return
                due = started + index / plan.rate
                if due >= deadline:
                    return
                counters["next"] += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    if index % 2 == 0:
                        nonce = base64.b64encode(os.urandom(32)).decode()
                        body = attest | {"nonce": nonce}
                        answer = await connection.request("POST", "/v1/attest", body)
                        wanted = 409
                    else:
                        answer = await connection.request(
                            "POST", "/v1/keys/junk/release", bearer="a.b.c"
                        )
                        wanted = 401
                except HttpError:
                    counters["other"] += 1
                    continue
                counters["expected" if answer.status == wanted else "other"] += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(JUNK_CONNECTIONS)))
    return JunkOutcome(
        counters["next"], counters["expected"], counters["other"], time.monotonic() - started
    )


def junk_main(plan: JunkPlan, cpus: set[int], go: Any, results: Any) -> None:
    """Process entry: wait for the start, send the junk, report."""
    os.sched_setaffinity(0, cpus)
    go.get()
    results.put(uvloop.run(_junk(plan)))


@dataclass(frozen=True)
class Setup:
    state: BenchState
    cores: Cores
    config: BrokerConfig
    dsn: str
    plan: Plan
    policy: dict[str, Any]
    secret: bytes
    broker_source: Path | None


async def _counts(dsn: str) -> dict[str, int]:
    db = await Database.connect(dsn, 1, 1)
    try:
        return await audit.counts(db)
    finally:
        await db.close()


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Records added, by kind."""
    changed = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    return {kind: added for kind, added in changed.items() if added}


@contextmanager
def _start(setup: Setup) -> Iterator[RunningBroker]:
    """The broker, from ``broker_source`` when given: its process starts in that directory,
    where ``python -m broker`` finds that checkout's packages first (this process and the
    load generators keep their own code)."""
    if setup.broker_source is None:
        with deploy.broker(setup.state, setup.config) as running:
            yield running
        return
    here = Path.cwd()
    with ExitStack() as stack:
        os.chdir(setup.broker_source)
        try:
            running = stack.enter_context(deploy.broker(setup.state, setup.config))
        finally:
            os.chdir(here)
        yield running


def measure_records(setup: Setup, junk: int, rate: float) -> dict[str, Any]:
    """Audit records appended by ``junk`` requests: while serving, and once shut down."""
    before = asyncio.run(_counts(setup.dsn))
    with _start(setup) as running:
        _seed(setup, running)
        seeded = asyncio.run(_counts(setup.dsn))
        postgres = setup.state.postgres_pid()
        cpu_before = deploy.tree_cpu_seconds(running.pid), deploy.tree_cpu_seconds(postgres)
        outcome = _run_junk(setup, running, JunkPlan(running.host, running.port, rate, junk, 3600))
        cpu_after = deploy.tree_cpu_seconds(running.pid), deploy.tree_cpu_seconds(postgres)
        serving = asyncio.run(_counts(setup.dsn))
    stopped = asyncio.run(_counts(setup.dsn))
    return {
        "junk": outcome.sent,
        "refused_as_expected": outcome.refused_as_expected,
        "other_answers": outcome.other,
        "junk_per_s": round(outcome.sent / outcome.seconds, 1),
        "broker_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
        "postgres_cpu_s": round(cpu_after[1] - cpu_before[1], 2),
        "records_while_serving": _delta(serving, seeded),
        "records_after_shutdown": _delta(stopped, seeded),
        "seeding_records": sum(_delta(seeded, before).values()),
    }


def _seed(setup: Setup, running: RunningBroker) -> None:
    asyncio.run(seed.seed(setup.dsn, running.base, setup.secret, setup.policy))


def _run_junk(setup: Setup, running: RunningBroker, plan: JunkPlan) -> JunkOutcome:
    context = multiprocessing.get_context("spawn")
    go, results = context.Queue(), context.Queue()
    child = context.Process(
        target=junk_main, args=(plan, set(setup.cores.others), go, results), daemon=True
    )
    child.start()
    go.put(None)
    outcome: JunkOutcome = results.get(timeout=plan.seconds + 120)
    child.join(timeout=30)
    return outcome


def _legit(setup: Setup, running: RunningBroker, seconds: float, junk_rate: float) -> float:
    """Releases per second of the simulated guests over ``seconds``, with junk at
    ``junk_rate`` (0: none) arriving over the same window."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Queue(), context.Queue()
    plan = replace(setup.plan, host=running.host, ports=(running.port,), duration_s=seconds)
    cpus = set(setup.cores.others)
    generator = context.Process(
        target=generator_main, args=(plan, cpus, ready, go, results), daemon=True
    )
    generator.start()
    ready.get(timeout=120)
    junk_results = None
    if junk_rate > 0:
        junk_go, junk_results = context.Queue(), context.Queue()
        junk_plan = JunkPlan(running.host, running.port, junk_rate, None, plan.warmup_s + seconds)
        junker = context.Process(
            target=junk_main, args=(junk_plan, cpus, junk_go, junk_results), daemon=True
        )
        junker.start()
        junk_go.put(None)
    go.put(time.monotonic() + 0.2)
    outcome: Outcome = results.get(timeout=seconds + 180)
    generator.join(timeout=30)
    if junk_results is not None:
        junk_results.get(timeout=seconds + 180)
    if outcome.errors:
        raise RuntimeError(f"legitimate flows failed: {outcome.error_samples}")
    return outcome.flows / seconds


def measure_rates(setup: Setup, seconds: float, rounds: int, rate: float) -> dict[str, Any]:
    alone: list[float] = []
    with_junk: list[float] = []
    with _start(setup) as running:
        _seed(setup, running)
        for number in range(1, rounds + 1):
            alone.append(_legit(setup, running, seconds, 0))
            with_junk.append(_legit(setup, running, seconds, rate))
            print(
                f"round {number}: {alone[-1]:.0f} releases/s alone, "
                f"{with_junk[-1]:.0f} with junk at {rate:g}/s",
                file=sys.stderr,
            )
    return {
        "releases_per_s_alone": round(statistics.mean(alone), 1),
        "releases_per_s_with_junk": round(statistics.mean(with_junk), 1),
        "ratio": round(statistics.mean(with_junk) / statistics.mean(alone), 3),
        "rounds": rounds,
    }


def prepare(options: argparse.Namespace) -> Setup:
    cores = Cores.detect()
    state = BenchState(options.state_dir)
    state.up(cores)
    snp = scenario("snp")
    material = snp.prepare(state.material_dir(snp.name), 1)
    keypool.ensure_pool(state.key_pool, GUESTS, len(cores.every))
    secret = seed.bench_secret(state.root / "bench-secret")
    dsn = asyncio.run(state.database(DATABASE))
    deploy.pin_tree(state.postgres_pid(), cores.others)
    config = BrokerConfig(
        dsn=dsn,
        workers=1,
        cpus=cores.broker,
        trusted_roots=material.root_files,
        log_file=state.logs / "junk-broker.log",
        hsm_threads=0,
    )
    plan = Plan(
        host="",
        ports=(0,),
        scenario=snp.name,
        material=material,
        key_pool=state.key_pool,
        pool_size=GUESTS,
        key_prefix=seed.KEY_PREFIX,
        key_count=1,
        secret=secret,
        guests=GUESTS,
        warmup_s=2.0,
        duration_s=options.duration,
        flow="token",  # the flow its earlier figures were measured on
    )
    policy = snp.policy(seed.POLICY_NAME, material.root_names())
    source = None if options.broker_source is None else options.broker_source.resolve()
    if source is not None and not (source / "broker" / "__main__.py").is_file():
        raise SystemExit(f"--broker-source: {source} holds no `broker` package")
    return Setup(state, cores, config, dsn, plan, policy, secret, source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.junk", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".keybroker/junk"))
    parser.add_argument("--junk", type=int, default=10_000)
    parser.add_argument("--junk-rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3, help="0: audit records only")
    parser.add_argument(
        "--broker-source", type=Path, help="run the broker from this checkout's `broker`"
    )
    options = parser.parse_args(argv)
    setup = prepare(options)
    try:
        records = measure_records(setup, options.junk, options.junk_rate)
        print(f"audit records: {json.dumps(records)}", file=sys.stderr)
        rates = (
            measure_rates(setup, options.duration, options.rounds, options.junk_rate)
            if options.rounds > 0
            else {}
        )
    finally:
        setup.state.down()
    print(json.dumps({**records, **rates, "junk_rate": options.junk_rate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
