"""Prometheus metrics, one registry per application instance (tests build many apps)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    attestations: Counter
    releases: Counter

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
        )
