"""Prometheus metrics, one registry per application instance (tests build many apps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    attestations: Counter
    releases: Counter
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
            attestations=Counter(
                "keybroker_attestations",
                "Attestation decisions by tee and outcome",
                ["tee", "outcome"],
                registry=registry,
            ),
            releases=Counter(
                "keybroker_releases",
                "Release decisions by outcome",
                ["outcome"],
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
                "Requests and connections refused by the connection limits, by reason",
                ["reason"],
                registry=registry,
            ),
        )


class Children:
    """A metric's children by label values, each looked up once: ``labels()`` validates the
    values and takes a lock on every call, and the hot path calls it several times a
    release. The label values come from code (routes, statuses, outcomes): few."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
