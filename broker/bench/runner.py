"""``keybroker bench``: the floor, then end-to-end load runs, then the report.

Runs, in order (ARCHITECTURE §6, issue 8):

1. the floor, one core, in this process (:mod:`broker.bench.floor`), and the HSM envelope's
   throughput at one and two threads;
2. end-to-end, the broker pinned to one core with one worker while PostgreSQL and the
   generators share the other cores, at each latency level (1, 16, 128 guests);
3. the same with the broker on every core (one worker per core) for the absolute figure;
4. the scale run: the pinned run at the headline concurrency against a database holding
   100,000 keys and 1,000,000 audit records.

``--quick`` does the floor and the pinned run at the headline concurrency only.

Every run drives one flow (``--flow``: ``one-request`` by default, or ``token``) and compares
it with that flow's floor. ``--platforms N`` adds the fleet comparison: one pinned broker
driven in alternating rounds with evidence from one simulated chip and from the next of N
chips at every flow (the SNP scenario's fleet);
``--replicas N`` adds two unpinned runs, one broker process and then N of them on the same
database and token, guests spread across them (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keybroker_guest.evidence import BindingInput

from broker.bench import floor, keypool, seed
from broker.bench.deploy import (
    BenchState,
    BrokerConfig,
    Cores,
    RunningBroker,
    broker,
    pin_tree,
    tree_cpu_seconds,
)
from broker.bench.loadgen import Generator, Outcome, Plan, generator_main
from broker.bench.scenarios import Material, Scenario, scenario
from broker.guest.client import tee_jwk
from broker.release.binding import expected_report_data
from broker.settings import Settings
from hsm.custody import Custody
from hsm.pubkey import RsaPublicKey

Say = Callable[[str], None]
DEFAULT_HSM_THREADS = Settings().hsm_threads
PROFILED = "one core, py-spy"
SCALE_REFERENCE = "one core, scale ref"
SCALE_RUN = "one core, scale"
SCALE_ROUNDS = 3
FLEET_REFERENCE = "one core, fleet ref"
FLEET_RUN = "one core, fleet"


@dataclass(frozen=True)
class Options:
    state_dir: Path
    scenario: str = "snp"
    quick: bool = False
    duration_s: float = 15.0
    warmup_s: float = 3.0
    concurrency: int = 16
    levels: tuple[int, ...] = (1, 16, 128)
    workers: int = 0
    """Workers of the all-cores run; 0 means one per core."""
    generators: int = 2
    scale_keys: int = 100_000
    scale_audit: int = 1_000_000
    scale: bool = True
    floor_s: float = 5.0
    check_every: int = 20
    broker_log_level: str = "info"
    hsm_threads: int = 0
    """The broker's ``hsm_threads``: 0 (inline) suits the in-process SoftHSM token."""
    key_pool: int = 32
    """Guest keys at least (one per guest at most 256 when there are more guests)."""
    py_spy: Path | None = None
    """Record the broker with py-spy (collapsed stacks) in an extra run like the headline."""
    flow: str = "one-request"
    """The release flow every run drives: ``one-request`` or ``token``."""
    platforms: int = 1
    """Simulated platforms of the fleet run (1: no fleet run)."""
    replicas: int = 1
    """Broker processes of the replica run (1: no replica runs)."""

    def effective(self) -> Options:
        if not self.quick:
            return self
        return replace(
            self,
            duration_s=min(self.duration_s, 8.0),
            warmup_s=min(self.warmup_s, 3.0),
            levels=(self.concurrency,),
            scale=False,
            floor_s=min(self.floor_s, 2.0),
        )


@dataclass(frozen=True)
class RunSpec:
    label: str
    workers: int
    pinned: bool
    concurrency: int
    keys: int
    database: str
    hsm_threads: int
    platforms: int = 1
    replicas: int = 1

    def broker_key(self) -> tuple[str, int, bool, int, int]:
        """Runs with equal keys share one broker (or one set of replicas)."""
        return (self.database, self.workers, self.pinned, self.hsm_threads, self.replicas)


@dataclass
class RunResult:
    spec: RunSpec
    releases_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    flows: int
    errors: int
    error_samples: list[str]
    checked: int
    generator_cpu: float
    """Cores the generators used, on average over the window."""
    broker_cpu: float
    postgres_cpu: float


@dataclass
class Report:
    scenario: str
    flow: str
    machine: dict[str, str]
    floor: floor.FloorResult
    envelope_per_s: dict[int, float]
    runs: list[RunResult] = field(default_factory=list)
    headline: RunResult | None = None
    floor_after: float | None = None
    """The floor again, right after the pinned runs: the machine's speed drifts."""
    floor_cpu_after: float | None = None
    """Its rate per CPU-second then."""

    @property
    def floor_per_cpu_s(self) -> float:
        """The floor per second of its own CPU time, the mean of before and after."""
        if self.floor_cpu_after is None:
            return self.floor.per_cpu_s
        return (self.floor.per_cpu_s + self.floor_cpu_after) / 2

    @property
    def floor_per_s(self) -> float:
        """What the ratio divides by: the mean of the floor before and after the runs."""
        if self.floor_after is None:
            return self.floor.per_s
        return (self.floor.per_s + self.floor_after) / 2

    def run_labelled(self, label: str) -> RunResult | None:
        return next((run for run in self.runs if run.spec.label == label), None)

    def mean_rate(self, label: str) -> float | None:
        """Releases per second over every run with ``label`` (equal windows: their mean)."""
        rates = [run.releases_per_s for run in self.runs if run.spec.label == label]
        return sum(rates) / len(rates) if rates else None


# --- the whole benchmark ----------------------------------------------------------------------


def run(options: Options, say: Say) -> Report:
    options = options.effective()
    cores = Cores.detect()
    state = BenchState(options.state_dir)
    say(
        f"state directory {state.root}; broker core(s) {sorted(cores.broker)}, "
        f"generator and PostgreSQL core(s) {sorted(cores.others)}"
    )
    state.up(cores)
    try:
        return Bench(options, cores, state, say).run()
    finally:
        state.down()


class Bench:
    """One benchmark: its options, scenario, cores, state directory and material."""

    def __init__(self, options: Options, cores: Cores, state: BenchState, say: Say) -> None:
        self.options = options
        self.scenario: Scenario = scenario(options.scenario)
        self.cores = cores
        self.state = state
        self.say = say
        if options.platforms > self.scenario.max_platforms:
            raise ValueError(
                f"scenario {self.scenario.name} simulates at most "
                f"{self.scenario.max_platforms} platform(s), not {options.platforms}"
            )
        if options.platforms > 1:
            say(f"fleet: {options.platforms} simulated platforms (made once, then kept)")
        self.material: Material = self.scenario.prepare(
            state.material_dir(self.scenario.name), options.platforms
        )
        self.pool_size = max(options.key_pool, min(256, max(options.levels)))
        self.secret = seed.bench_secret(state.root / "bench-secret")

    def run(self) -> Report:
        options, say = self.options, self.say
        say(f"guest key pool: {self.pool_size} RSA-{keypool.RSA_BITS} keys")
        keypool.ensure_pool(self.state.key_pool, self.pool_size, len(self.cores.every))
        say("floor: one release's unavoidable work, one core")
        floor_result, envelope = self.floor()
        report = Report(self.scenario.name, options.flow, machine_facts(), floor_result, envelope)
        say(f"floor {floor_result.per_s:.0f}/s")
        for index, group in enumerate(_groups(self.specs())):
            self.run_group(group, report)
            if index == 0:  # the pinned runs, the headline among them
                again = self.floor(parts=False)[0]
                report.floor_after, report.floor_cpu_after = again.per_s, again.per_cpu_s
                say(f"floor again {report.floor_after:.0f}/s")
        if options.platforms > 1:
            self.fleet_comparison(report)
        if options.scale:
            self.scale_comparison(report)
        report.headline = next(
            r
            for r in report.runs
            if r.spec.pinned
            and r.spec.keys == 1
            and r.spec.concurrency == options.concurrency
            and r.spec.hsm_threads == options.hsm_threads
            and r.spec.platforms == 1
            and r.spec.label == "one core"
        )
        return report

    def specs(self) -> list[RunSpec]:
        options = self.options
        workers_all = options.workers or len(self.cores.every)
        one_key = f"bench_{self.scenario.name}_1"
        threads = options.hsm_threads
        specs = [RunSpec("one core", 1, True, c, 1, one_key, threads) for c in options.levels]
        if options.py_spy is not None:  # an extra run: the sampler slows the broker down
            specs.append(RunSpec(PROFILED, 1, True, options.concurrency, 1, one_key, threads))
        if options.replicas > 1:
            specs += [
                RunSpec(
                    f"all cores, {n} repl.",
                    1,
                    False,
                    options.concurrency,
                    1,
                    one_key,
                    threads,
                    replicas=n,
                )
                for n in (1, options.replicas)
            ]
        if options.quick:
            return specs
        if threads != DEFAULT_HSM_THREADS:
            specs.append(
                RunSpec(
                    f"one core, {DEFAULT_HSM_THREADS} HSM thr",
                    1,
                    True,
                    options.concurrency,
                    1,
                    one_key,
                    DEFAULT_HSM_THREADS,
                )
            )
        specs += [
            RunSpec("all cores", workers_all, False, c, 1, one_key, threads) for c in options.levels
        ]
        return specs

    def run_group(self, group: list[RunSpec], report: Report) -> None:
        """The runs of ``group`` against one broker (or its replicas) started for them."""
        first, state, cores = group[0], self.state, self.cores
        dsn = asyncio.run(state.database(first.database))
        pin_tree(state.postgres_pid(), cores.others if first.pinned else cores.every)
        with ExitStack() as stack:
            replicas = [
                stack.enter_context(broker(state, self.broker_config(first, dsn, replica)))
                for replica in range(first.replicas)
            ]
            policy = self.scenario.policy(seed.POLICY_NAME, self.material.root_names())
            asyncio.run(seed.seed(dsn, replicas[0].base, self.secret, policy))
            if first.keys > 1:
                self.ensure_scale(replicas[0], dsn)
            for spec in group:
                self.say(
                    f"run: {spec.label}, {spec.replicas} broker(s) of {spec.workers} worker(s), "
                    f"{spec.concurrency} guest(s), {spec.keys} key(s), {spec.platforms} "
                    f"platform(s), {self.options.flow} flow, {self.options.duration_s:g} s"
                )
                result = self.load(replicas, spec)
                report.runs.append(result)
                self.say(
                    f"  {result.releases_per_s:.0f} releases/s, p50 {result.p50_ms:.1f} ms, "
                    f"p99 {result.p99_ms:.1f} ms, errors {result.errors}"
                )

    # --- the floor ------------------------------------------------------------------------

    def floor(self, *, parts: bool = True) -> tuple[floor.FloorResult, dict[int, float]]:
        """The floor on the broker's core; with ``parts``, each part alone and the HSM
        envelope at one and two threads too."""
        hsm = self.state.softhsm
        # No secret cache (the default): the floor unwraps on every release.
        custody = Custody.open(hsm.module_path, hsm.token_label, hsm.user_pin, 2)
        seconds = self.options.floor_s
        try:
            custody.ensure_ready()
            wrapped = custody.import_secret(self.secret)
            tee_key, jwk = tee_jwk(keypool.load_pool(self.state.key_pool, 1)[0])
            nonce = secrets.token_bytes(32)
            nonce_text = base64.b64encode(nonce).decode()
            evidence, collateral = self.scenario.source(self.material).produce(
                BindingInput(
                    expected_report_data(nonce_text, jwk, "sha384"), nonce, tee_key.spki_der()
                )
            )
            case = floor.FloorCase(
                tee=self.scenario.tee,
                evidence=evidence,
                collateral=collateral,
                roots=self.material.roots(),
                now=datetime.now(UTC),
                wrapped=wrapped,
                tee_key=tee_key,
            )
            with _pinned(self.cores.broker):
                result = floor.measure(case, custody, seconds, parts=parts, flow=self.options.flow)
            keys: list[RsaPublicKey] = [tee_key]
            envelope = {
                threads: floor.envelope_rate(custody, wrapped, keys, threads, seconds / 2)
                for threads in ((1, 2) if parts else ())
            }
        finally:
            custody.close()
        return result, envelope

    def broker_config(self, spec: RunSpec, dsn: str, replica: int = 0) -> BrokerConfig:
        cores = self.cores
        name = f"broker-{spec.database}-{spec.workers}w" + (f"-r{replica}" if replica else "")
        return BrokerConfig(
            dsn=dsn,
            workers=spec.workers,
            cpus=cores.broker if spec.pinned else cores.every,
            trusted_roots=self.material.root_files,
            log_file=self.state.logs / f"{name}.log",
            log_level=self.options.broker_log_level,
            hsm_threads=spec.hsm_threads,
        )

    # --- the scale comparison ----------------------------------------------------------------

    def scale_comparison(self, report: Report) -> None:
        """One key on an empty database against 100,000 keys and 1,000,000 audit records:
        two brokers up at once, pinned alike, driven in turn for ``SCALE_ROUNDS`` rounds
        that share the headline's duration. Alternating keeps both figures inside the same
        minutes: on this shared machine, the speed drifts by more than the 10% compared."""
        options, state, cores = self.options, self.state, self.cores
        threads = options.hsm_threads
        databases = (f"bench_{self.scenario.name}_1", f"bench_{self.scenario.name}_scale")
        dsns = [asyncio.run(state.database(name)) for name in databases]
        specs = (
            RunSpec(SCALE_REFERENCE, 1, True, options.concurrency, 1, databases[0], threads),
            RunSpec(
                SCALE_RUN, 1, True, options.concurrency, options.scale_keys, databases[1], threads
            ),
        )
        configs = [self.broker_config(spec, dsn) for spec, dsn in zip(specs, dsns, strict=True)]
        duration = max(1.0, options.duration_s / SCALE_ROUNDS)
        pin_tree(state.postgres_pid(), cores.others)
        policy = self.scenario.policy(seed.POLICY_NAME, self.material.root_names())
        with broker(state, configs[0]) as one, broker(state, configs[1]) as many:
            for running, dsn in ((one, dsns[0]), (many, dsns[1])):
                asyncio.run(seed.seed(dsn, running.base, self.secret, policy))
            self.ensure_scale(many, dsns[1])
            for round_number in range(1, SCALE_ROUNDS + 1):
                for running, spec in ((one, specs[0]), (many, specs[1])):
                    self.say(
                        f"run: {spec.label} ({round_number}/{SCALE_ROUNDS}), {spec.keys} key(s),"
                        f" {duration:g} s"
                    )
                    result = self.load([running], spec, duration)
                    report.runs.append(result)
                    self.say(
                        f"  {result.releases_per_s:.0f} releases/s, p99 {result.p99_ms:.1f} ms,"
                        f" errors {result.errors}"
                    )

    def fleet_comparison(self, report: Report) -> None:
        """One platform against ``--platforms`` on one pinned broker, driven in turn for
        ``SCALE_ROUNDS`` rounds that share the headline's duration (alternating, as the
        scale comparison does, so that the machine's drift hits both alike)."""
        options, state = self.options, self.state
        database = f"bench_{self.scenario.name}_1"
        threads = options.hsm_threads
        specs = [
            RunSpec(label, 1, True, options.concurrency, 1, database, threads, platforms=n)
            for label, n in ((FLEET_REFERENCE, 1), (FLEET_RUN, options.platforms))
        ]
        dsn = asyncio.run(state.database(database))
        duration = max(1.0, options.duration_s / SCALE_ROUNDS)
        pin_tree(state.postgres_pid(), self.cores.others)
        with broker(state, self.broker_config(specs[0], dsn)) as running:
            policy = self.scenario.policy(seed.POLICY_NAME, self.material.root_names())
            asyncio.run(seed.seed(dsn, running.base, self.secret, policy))
            for round_number in range(1, SCALE_ROUNDS + 1):
                for spec in specs:
                    self.say(
                        f"run: {spec.label} ({round_number}/{SCALE_ROUNDS}), {spec.platforms} "
                        f"platform(s), {duration:g} s"
                    )
                    result = self.load([running], spec, duration)
                    report.runs.append(result)
                    self.say(
                        f"  {result.releases_per_s:.0f} releases/s, p99 {result.p99_ms:.1f} ms,"
                        f" errors {result.errors}"
                    )

    # --- the scale database ---------------------------------------------------------------

    def ensure_scale(self, running: RunningBroker, dsn: str) -> None:
        options, say = self.options, self.say
        target = seed.Scale(options.scale_keys, options.scale_audit)
        keys_loaded, audit_loaded = asyncio.run(seed.scale_loaded(dsn, target))
        if keys_loaded and audit_loaded:
            say("scale database already loaded")
            return
        if not keys_loaded:
            started = time.monotonic()
            hsm = self.state.softhsm
            custody = Custody.open(hsm.module_path, hsm.token_label, hsm.user_pin, 1)
            try:
                added = asyncio.run(
                    seed.preload_keys(dsn, options.scale_keys, self.secret, custody.import_secret)
                )
            finally:
                custody.close()
            say(f"preloaded {added} keys in {time.monotonic() - started:.1f} s")
        if not audit_loaded:
            # A few real releases give the audit log the records to copy.
            warm = replace(
                self.plan([running], guests=2, keys=1, index=0), warmup_s=0.0, duration_s=1.0
            )
            asyncio.run(Generator(warm).run(time.monotonic()))
            started = time.monotonic()
            head = asyncio.run(seed.preload_audit(dsn, options.scale_audit, options.scale_keys))
            say(
                f"preloaded {options.scale_audit} audit records (head {head}) in "
                f"{time.monotonic() - started:.1f} s"
            )

    # --- one load run ---------------------------------------------------------------------

    def plan(
        self,
        replicas: list[RunningBroker],
        *,
        guests: int,
        keys: int,
        index: int,
        duration_s: float | None = None,
        platforms: int = 1,
        generators: int = 1,
    ) -> Plan:
        return Plan(
            host=replicas[0].host,
            ports=tuple(running.port for running in replicas),
            scenario=self.scenario.name,
            material=self.material,
            key_pool=self.state.key_pool,
            pool_size=self.pool_size,
            key_prefix=seed.KEY_PREFIX,
            key_count=keys,
            secret=self.secret,
            guests=guests,
            warmup_s=self.options.warmup_s,
            duration_s=self.options.duration_s if duration_s is None else duration_s,
            check_every=self.options.check_every,
            seed=index,
            flow=self.options.flow,
            platforms=platforms,
            generators=generators,
        )

    def load(
        self, replicas: list[RunningBroker], spec: RunSpec, duration_s: float | None = None
    ) -> RunResult:
        """Generator processes drive the broker; CPU is metered over the same window."""
        options = self.options
        duration = options.duration_s if duration_s is None else duration_s
        processes = max(1, min(options.generators, spec.concurrency))
        shares = [
            spec.concurrency // processes + (i < spec.concurrency % processes)
            for i in range(processes)
        ]
        context = multiprocessing.get_context("spawn")
        ready, go, results = context.Queue(), context.Queue(), context.Queue()
        cpus = set(self.cores.others if spec.pinned else self.cores.every)
        children = [
            context.Process(
                target=generator_main,
                args=(
                    self.plan(
                        replicas,
                        guests=share,
                        keys=spec.keys,
                        index=i,
                        duration_s=duration,
                        platforms=spec.platforms,
                        generators=processes,
                    ),
                    cpus,
                    ready,
                    go,
                    results,
                ),
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]
        for child in children:
            child.start()
        for _ in children:
            ready.get(timeout=120)
        start = time.monotonic() + 0.2
        for _ in children:
            go.put(start)
        window_start = start + options.warmup_s
        postgres = self.state.postgres_pid()
        time.sleep(max(0.0, window_start - time.monotonic()))
        broker_before = sum(tree_cpu_seconds(running.pid) for running in replicas)
        pg_before = tree_cpu_seconds(postgres)
        recorder = self.record(replicas[0], spec)
        time.sleep(max(0.0, window_start + duration - time.monotonic()))
        broker_after = sum(tree_cpu_seconds(running.pid) for running in replicas)
        pg_after = tree_cpu_seconds(postgres)
        if recorder is not None:
            recorder.wait(timeout=60)
        outcomes: list[Outcome] = [results.get(timeout=120) for _ in children]
        for child in children:
            child.join(timeout=30)
        return _summarise(
            spec,
            outcomes,
            duration,
            (broker_after - broker_before) / duration,
            (pg_after - pg_before) / duration,
        )

    def record(self, running: RunningBroker, spec: RunSpec) -> subprocess.Popen[bytes] | None:
        """py-spy on the broker over the window of the profiled run, when asked for."""
        options = self.options
        if options.py_spy is None or spec.label != PROFILED:
            return None
        found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(found).exists():
            self.say("py-spy is not installed (pip install py-spy): no profile")
            return None
        self.say(f"recording the broker with py-spy into {options.py_spy}")
        return subprocess.Popen(  # noqa: S603 - py-spy with our arguments
            [
                found,
                "record",
                "--pid",
                str(running.pid),
                "--duration",
                str(max(1, int(options.duration_s))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(options.py_spy),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _groups(specs: list[RunSpec]) -> Iterator[list[RunSpec]]:
    """Consecutive runs that share one broker."""
    group: list[RunSpec] = []
    for spec in specs:
        if group and spec.broker_key() != group[0].broker_key():
            yield group
            group = []
        group.append(spec)
    if group:
        yield group


@contextmanager
def _pinned(cpus: frozenset[int]) -> Iterator[None]:
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def _summarise(
    spec: RunSpec, outcomes: list[Outcome], window: float, broker_cpu: float, pg_cpu: float
) -> RunResult:
    latencies = sorted(x for o in outcomes for x in o.latencies_ms)
    flows = sum(o.flows for o in outcomes)
    return RunResult(
        spec=spec,
        releases_per_s=flows / window,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        flows=flows,
        errors=sum(o.errors for o in outcomes),
        error_samples=[s for o in outcomes for s in o.error_samples][:5],
        checked=sum(o.checked for o in outcomes),
        generator_cpu=sum(o.cpu_s for o in outcomes) / window,
        broker_cpu=broker_cpu,
        postgres_cpu=pg_cpu,
    )


def _percentile(values: list[float], percent: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


# --- machine facts -----------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    import platform  # noqa: PLC0415

    import cryptography  # noqa: PLC0415

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
    }
