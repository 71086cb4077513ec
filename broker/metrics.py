"""Prometheus metrics: one registry per application instance (tests build many apps), and
one exposition summed over every worker process when there are several.

With ``workers > 1`` the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory
before it starts the workers (``broker/cli/serve.py``); prometheus-client then keeps each
worker's values in memory-mapped files there, and whichever worker answers ``/metrics``
reads them all (``MultiProcessCollector``): counters and histograms are summed, the HSM
pool's gauges summed over the live workers. A worker that stops cleanly removes its gauge
files (:func:`process_stopped`); its counters stay counted, as counters must.

Label values come from code or from objects an admin created (key names, problem types,
TEE names, routes), never from what a request merely says: a guest asking for a thousand
unknown keys adds no series.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The environment variable prometheus-client reads, at import, to keep values in files.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds: from a millisecond (a cached policy, a PostgreSQL commit on a local socket) to
#: seconds (a collateral fetch inside an attestation, an HSM queue under load).
FAST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    decisions: Counter
    evidence_seconds: Histogram
    policy_seconds: Histogram
    envelope_seconds: Histogram
    commit_seconds: Histogram
    collateral_lookups: Counter
    hsm_wait_seconds: Histogram
    hsm_sessions: Gauge
    unauthenticated: Counter
    unauthenticated_audit_failures: Counter
    refused: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "keybroker_http_requests",
                "HTTP requests by route and status",
                ["route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "keybroker_http_request_seconds",
                "HTTP request latency by route",
                ["route"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                registry=registry,
            ),
            decisions=Counter(
                "keybroker_decisions",
                "Decisions audited one by one, once committed: by kind (attest, release, kms),"
                " key (empty when no key was looked at or none exists by that name), TEE"
                " (empty when none was attested), outcome (allow, deny, error) and reason (the"
                " problem type of a refusal; empty when allowed)",
                ["kind", "key", "tee", "outcome", "reason"],
                registry=registry,
            ),
            evidence_seconds=Histogram(
                "keybroker_evidence_verification_seconds",
                "Evidence verification (collateral lookups included) by TEE and outcome",
                ["tee", "outcome"],
                buckets=FAST_BUCKETS,
                registry=registry,
            ),
            policy_seconds=Histogram(
                "keybroker_policy_evaluation_seconds",
                "Release policy evaluation on verified claims",
                buckets=FAST_BUCKETS,
                registry=registry,
            ),
            envelope_seconds=Histogram(
                "keybroker_hsm_envelope_seconds",
                "Making the answer of an allowed use in the HSM (release envelope, KBS JWE,"
                " KMS operation), by kind",
                ["kind"],
                buckets=FAST_BUCKETS,
                registry=registry,
            ),
            commit_seconds=Histogram(
                "keybroker_db_commit_seconds",
                "Audit statements, from sending to commit, by statement",
                ["statement"],
                buckets=FAST_BUCKETS,
                registry=registry,
            ),
            collateral_lookups=Counter(
                "keybroker_collateral_lookups",
                "Collateral items looked up for a verification, by TEE, kind and result:"
                " fresh (stored and fresh), stale (stored past nextUpdate, fetching off),"
                " fetched, fetch_failed, missing (not stored, not fetchable)",
                ["tee", "kind", "result"],
                registry=registry,
            ),
            hsm_wait_seconds=Histogram(
                "keybroker_hsm_session_wait_seconds",
                "Time a PKCS#11 call waited for a free session of the pool",
                buckets=FAST_BUCKETS,
                registry=registry,
            ),
            hsm_sessions=Gauge(
                "keybroker_hsm_sessions",
                "PKCS#11 sessions of the workers' pools: size (threads), open, busy",
                ["state"],
                multiprocess_mode="livesum",
                registry=registry,
            ),
            unauthenticated=Counter(
                "keybroker_unauthenticated_requests",
                "Guest requests refused before anything the broker issued was recognised in"
                " them (audited in aggregate), by endpoint and reason",
                ["endpoint", "reason"],
                registry=registry,
            ),
            unauthenticated_audit_failures=Counter(
                "keybroker_unauthenticated_audit_failures",
                "Windows of unrecognised requests whose aggregate audit records could not all"
                " be written",
                registry=registry,
            ),
            refused=Counter(
                "keybroker_http_refused",
                "Requests and connections refused by the connection limits (rate_limited"
                " among them), by reason",
                ["reason"],
                registry=registry,
            ),
        )


class Children:
    """A metric's children by label values, each looked up once: ``labels()`` validates the
    values and takes a lock on every call, and the hot path calls it several times a
    release. The label values come from code (routes, statuses, outcomes): few."""

    def __init__(self, metric: Counter | Histogram | Gauge) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


@contextmanager
def timed(histogram: Any) -> Iterator[None]:
    """Observe the block's duration in ``histogram`` (a Histogram or one of its children),
    whether it ends by returning or raising."""
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - start)


@contextmanager
def timed_outcome(children: Children, label: str) -> Iterator[None]:
    """Observe the block's duration in ``children(label, outcome)``: ``ok``, or the
    ``outcome`` of the keybroker error it raised (``deny``, ``error``); ``error`` for any
    other exception."""
    start = time.perf_counter()
    result = "error"
    try:
        yield
        result = "ok"
    except Exception as exc:
        result = str(getattr(exc, "outcome", "error"))
        raise
    finally:
        children(label, result).observe(time.perf_counter() - start)


def multiprocess_directory() -> str | None:
    """Where the workers keep their values; None when this process counts alone."""
    return os.environ.get(MULTIPROCESS_ENV) or None


def exposition(metrics: Metrics) -> bytes:
    """The text exposition: every worker's values summed when there are several, this
    process's registry otherwise."""
    directory = multiprocess_directory()
    if directory is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class HsmPoolMetrics:
    """The HSM session pool's :class:`hsm.sessions.PoolObserver`: its size, open and busy
    sessions (``keybroker_hsm_sessions{state}``) and the wait for a free session."""

    def __init__(self, metrics: Metrics, threads: int) -> None:
        self._waits = metrics.hsm_wait_seconds
        self._busy = metrics.hsm_sessions.labels("busy")
        self._open = metrics.hsm_sessions.labels("open")
        metrics.hsm_sessions.labels("size").set(threads)

    def waited(self, seconds: float) -> None:
        self._waits.observe(seconds)

    def busy(self, delta: int) -> None:
        self._busy.inc(delta)

    def opened(self, sessions: int) -> None:
        self._open.set(sessions)


class _Families(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


def collateral_exposition(counts: list[tuple[str, str, int, int]]) -> bytes:
    """``keybroker_collateral_items{tee, kind, state}``: what the collateral store (shared
    by every worker and replica) holds, fresh and stale, read when scraped."""
    family = GaugeMetricFamily(
        "keybroker_collateral_items",
        "Collateral items stored, by TEE, kind and state (fresh, or stale: past nextUpdate)",
        labels=["tee", "kind", "state"],
    )
    for tee, kind, fresh, stale in counts:
        family.add_metric([tee, kind, "fresh"], fresh)
        family.add_metric([tee, kind, "stale"], stale)
    registry = CollectorRegistry()
    registry.register(_Families([family]))
    return generate_latest(registry)


def process_stopped() -> None:
    """A worker stops: its live gauges (the HSM pool) leave the sums."""
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), path=directory)  # type: ignore[no-untyped-call]
